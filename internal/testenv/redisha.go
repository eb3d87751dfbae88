package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisCluster is a Redis Cluster of private redis-server processes on
// loopback ports: three masters, each with one replica, covering every slot.
type RedisCluster struct {
	t     testing.TB
	Nodes []*Redis // the six nodes; which ones are masters changes on failover
}

// StartRedisCluster starts six redis-server processes in cluster mode, joins
// them with `redis-cli --cluster create` (three masters, one replica each)
// and waits until the cluster is ok on every node and every replica is in
// sync. They are stopped at the end of the test. Without redis-server and
// redis-cli on PATH the test is skipped (failed under CI=true).
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		unavailable(t, "no redis-cli on PATH to create a Redis Cluster")
	}
	c := &RedisCluster{t: t}
	addrs := make([]string, 6)
	for i := range addrs {
		// A short node timeout makes a failover take about a second.
		n := StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000")
		c.Nodes = append(c.Nodes, n)
		addrs[i] = n.Addr()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// URL is the cluster's URL in the form connect.RedisClient reads: the first
// three nodes as seeds.
func (c *RedisCluster) URL() string {
	return fmt.Sprintf("redis://%s?addr=%s&addr=%s", c.Nodes[0].Addr(), c.Nodes[1].Addr(), c.Nodes[2].Addr())
}

// WaitHealthy waits (up to 30 s) until every running node reports
// cluster_state:ok and sees three masters, and every replica's link to its
// master is up and caught up with its offset.
func (c *RedisCluster) WaitHealthy() {
	c.t.Helper()
	Eventually(c.t, 30*time.Second, func() bool {
		masters := 0
		for _, n := range c.Nodes {
			if !n.Running() {
				continue
			}
			info, err := n.Info("cluster")
			if err != nil || !strings.Contains(info, "cluster_enabled:1") {
				return false
			}
			ci, err := n.Command("CLUSTER", "INFO")
			if err != nil || !strings.Contains(fmt.Sprint(ci), "cluster_state:ok") ||
				!strings.Contains(fmt.Sprint(ci), "cluster_slots_ok:16384") {
				return false
			}
			repl, err := n.Info("replication")
			if err != nil {
				return false
			}
			switch {
			case strings.Contains(repl, "role:master"):
				masters++
			case !strings.Contains(repl, "master_link_status:up"):
				return false
			}
		}
		return masters == 3
	}, "redis cluster never became healthy with three masters")
}

// Replica returns a running replica node.
func (c *RedisCluster) Replica() *Redis {
	c.t.Helper()
	for _, n := range c.Nodes {
		if info, err := n.Info("replication"); err == nil && strings.Contains(info, "role:slave") {
			return n
		}
	}
	c.t.Fatal("testenv: no replica in the redis cluster")
	return nil
}

// Failover runs CLUSTER FAILOVER on a replica: its master stops taking
// writes, the replica catches up with it and takes over its slots (no
// acknowledged write is lost), then waits until the replica is a master
// and the cluster is healthy again. It returns the promoted node.
func (c *RedisCluster) Failover() *Redis {
	c.t.Helper()
	r := c.Replica()
	if _, err := r.Command("CLUSTER", "FAILOVER"); err != nil {
		c.t.Fatalf("testenv: CLUSTER FAILOVER on %s: %v", r.Addr(), err)
	}
	Eventually(c.t, 30*time.Second, func() bool {
		info, err := r.Info("replication")
		return err == nil && strings.Contains(info, "role:master")
	}, "replica %s never became master after CLUSTER FAILOVER", r.Addr())
	c.WaitHealthy()
	return r
}

// RedisSentinel is a Sentinel setup of private processes on loopback ports:
// one master, one replica and three Sentinels (quorum 2) monitoring it as
// MasterName.
type RedisSentinel struct {
	t         testing.TB
	Master    *Redis // the node started as master; a replica after Failover
	Replica   *Redis // the node started as replica; the master after Failover
	Sentinels []*sentinel
}

// MasterName is the name the Sentinels monitor the master under.
const MasterName = "wagate"

type sentinel struct {
	port int
	cmd  *exec.Cmd
}

func (s *sentinel) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

// StartRedisSentinel starts a master, a replica of it and three Sentinels
// (`redis-server sentinel.conf --sentinel`), and waits until the replica is
// in sync and every Sentinel knows the replica and the other Sentinels. All
// are stopped at the end of the test.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	s := &RedisSentinel{t: t}
	s.Master = StartRedis(t)
	s.Replica = StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(s.Master.port))
	Eventually(t, 20*time.Second, func() bool {
		info, err := s.Replica.Info("replication")
		return err == nil && strings.Contains(info, "master_link_status:up")
	}, "replica %s never synced with %s", s.Replica.Addr(), s.Master.Addr())
	for range 3 {
		dir := t.TempDir()
		port := FreePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 10000\n",
			port, dir, filepath.Join(dir, "sentinel.log"), MasterName, s.Master.port, MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("redis-server", conf, "--sentinel")
		if err := cmd.Start(); err != nil {
			unavailable(t, "start redis-server --sentinel: %v", err)
		}
		sn := &sentinel{port: port, cmd: cmd}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		s.Sentinels = append(s.Sentinels, sn)
	}
	ctx := context.Background()
	for _, sn := range s.Sentinels {
		sc := redis.NewSentinelClient(&redis.Options{Addr: sn.addr(), MaxRetries: -1})
		Eventually(t, 30*time.Second, func() bool {
			replicas, err := sc.Replicas(ctx, MasterName).Result()
			if err != nil || len(replicas) != 1 || strings.Contains(replicas[0]["flags"], "down") {
				return false
			}
			sentinels, err := sc.Sentinels(ctx, MasterName).Result()
			return err == nil && len(sentinels) == 2
		}, "sentinel %s never saw the replica and the other sentinels", sn.addr())
		_ = sc.Close()
	}
	return s
}

// URL is the setup's URL in the form connect.RedisClient reads: every
// Sentinel, and the master's name.
func (s *RedisSentinel) URL() string {
	return fmt.Sprintf("redis://%s/0?master_name=%s&addr=%s&addr=%s",
		s.Sentinels[0].addr(), MasterName, s.Sentinels[1].addr(), s.Sentinels[2].addr())
}

// Failover runs SENTINEL FAILOVER on the first Sentinel and waits until
// every Sentinel names the replica as master and the replica says it is one.
// Master and Replica are swapped. The old master is turned into a replica
// by the Sentinels some seconds later (after their next INFO of it); it is
// not waited for.
func (s *RedisSentinel) Failover() {
	s.t.Helper()
	ctx := context.Background()
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Sentinels[0].addr(), MaxRetries: -1})
	defer sc.Close()
	if err := sc.Failover(ctx, MasterName).Err(); err != nil {
		s.t.Fatalf("testenv: SENTINEL FAILOVER %s: %v", MasterName, err)
	}
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.addr(), MaxRetries: -1})
		Eventually(s.t, 30*time.Second, func() bool {
			addr, err := c.GetMasterAddrByName(ctx, MasterName).Result()
			return err == nil && len(addr) == 2 && net2(addr) == s.Replica.Addr()
		}, "sentinel %s never switched to %s", sn.addr(), s.Replica.Addr())
		_ = c.Close()
	}
	Eventually(s.t, 30*time.Second, func() bool {
		info, err := s.Replica.Info("replication")
		return err == nil && strings.Contains(info, "role:master")
	}, "after SENTINEL FAILOVER, %s is not master", s.Replica.Addr())
	s.Master, s.Replica = s.Replica, s.Master
}

func net2(hostPort []string) string { return hostPort[0] + ":" + hostPort[1] }

// Running reports whether the server process is running (not Stopped).
func (r *Redis) Running() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.cmd != nil
}

// Command runs one command on the server with a 5 s timeout.
func (r *Redis) Command(args ...any) (any, error) {
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.Do(ctx, args...).Result()
}

// Info returns the server's INFO section.
func (r *Redis) Info(section string) (string, error) {
	v, err := r.Command("INFO", section)
	if err != nil {
		return "", err
	}
	s, _ := v.(string)
	return s, nil
}
