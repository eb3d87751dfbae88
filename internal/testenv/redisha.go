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
// loopback ports: three masters covering every slot, each with one replica
// unless started by StartRedisClusterTLS.
type RedisCluster struct {
	t        testing.TB
	Nodes    []*Redis // which ones are masters changes on failover
	tlsAddrs []string // each node's TLS host:port (StartRedisClusterTLS), in Nodes' order
}

// StartRedisCluster starts six redis-server processes in cluster mode, joins
// them with `redis-cli --cluster create` (three masters, one replica each)
// and waits until the cluster is ok on every node and every replica is in
// sync. They are stopped at the end of the test. Without redis-server and
// redis-cli on PATH the test is skipped (failed under CI=true).
func StartRedisCluster(t testing.TB) *RedisCluster {
	t.Helper()
	return startRedisCluster(t, 6, 1, nil)
}

// StartRedisClusterTLS starts a Redis Cluster of three masters (no
// replicas) whose clients, and whose nodes between themselves (the cluster
// bus), speak only TLS with certificates of f's CA: each node serves TLS on
// its own port, requires a client certificate, and shows its peers f's
// client certificate. Each node also keeps a plain port on loopback for the
// test's own commands (Command, Info); URL names the TLS ports only.
func StartRedisClusterTLS(t testing.TB, f TLSFiles) *RedisCluster {
	t.Helper()
	return startRedisCluster(t, 3, 0, &f)
}

func startRedisCluster(t testing.TB, nodes, replicas int, f *TLSFiles) *RedisCluster {
	t.Helper()
	if _, err := exec.LookPath("redis-cli"); err != nil {
		unavailable(t, "no redis-cli on PATH to create a Redis Cluster")
	}
	c := &RedisCluster{t: t}
	addrs := make([]string, nodes)
	for i := range addrs {
		// A short node timeout makes a failover take about a second.
		// The cluster bus port is set apart: the default, port+10000, may
		// be taken or past 65535.
		args := []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-node-timeout", "1000", "--cluster-port", strconv.Itoa(FreePort(t))}
		if f != nil {
			args = append(args, "--tls-port", strconv.Itoa(FreePort(t)), "--tls-cluster", "yes", "--tls-replication", "yes",
				"--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey,
				"--tls-client-cert-file", f.ClientCert, "--tls-client-key-file", f.ClientKey,
				"--tls-ca-cert-file", f.CA, "--tls-auth-clients", "yes")
		}
		n := StartRedis(t, args...)
		c.Nodes = append(c.Nodes, n)
		addrs[i] = n.Addr()
		if f != nil {
			// The TLS port the node started on (Start may have moved it).
			addrs[i] = "127.0.0.1:" + n.Arg("--tls-port")
			c.tlsAddrs = append(c.tlsAddrs, addrs[i])
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", strconv.Itoa(replicas), "--cluster-yes")
	if f != nil {
		args = append([]string{"--tls", "--cacert", f.CA, "--cert", f.ClientCert, "--key", f.ClientKey}, args...)
	}
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("testenv: redis-cli --cluster create: %v\n%s", err, out)
	}
	c.WaitHealthy()
	return c
}

// URL is the cluster's URL in the form connect.RedisClient reads: the first
// three nodes as seeds; rediss:// and the TLS ports for StartRedisClusterTLS.
func (c *RedisCluster) URL() string {
	if c.tlsAddrs != nil {
		return fmt.Sprintf("rediss://%s?addr=%s&addr=%s", c.tlsAddrs[0], c.tlsAddrs[1], c.tlsAddrs[2])
	}
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

// KillMaster kills (SIGKILL) a master that has a running replica, as a
// crashed host would, and waits until the replica has taken over its slots
// and the cluster is ok again. Writes the master acknowledged but had not yet
// sent to its replica are lost, as in production. It returns the killed
// node, which stays down.
func (c *RedisCluster) KillMaster() *Redis {
	c.t.Helper()
	for _, r := range c.Nodes {
		info, err := r.Info("replication")
		if err != nil || !strings.Contains(info, "role:slave") || !strings.Contains(info, "master_link_status:up") {
			continue
		}
		var master *Redis
		for _, m := range c.Nodes {
			if m.Running() && strings.Contains(info, "master_port:"+strconv.Itoa(m.port)+"\r\n") {
				master = m
			}
		}
		if master == nil {
			continue
		}
		master.Stop()
		Eventually(c.t, 30*time.Second, func() bool {
			info, err := r.Info("replication")
			return err == nil && strings.Contains(info, "role:master")
		}, "replica %s never took over from the killed master %s", r.Addr(), master.Addr())
		c.WaitHealthy()
		return master
	}
	c.t.Fatal("testenv: no master with a running replica in the redis cluster")
	return nil
}

// RedisSentinel is a Sentinel setup of private processes on loopback ports:
// one master, two replicas and three Sentinels (quorum 2) monitoring it as
// MasterName.
type RedisSentinel struct {
	t         testing.TB
	Nodes     []*Redis // the master first, as started; roles change on failover
	Sentinels []*sentinel
}

// MasterName is the name the Sentinels monitor the master under.
const MasterName = "wagate"

type sentinel struct {
	port int
	cmd  *exec.Cmd
}

func (s *sentinel) addr() string { return "127.0.0.1:" + strconv.Itoa(s.port) }

func (s *sentinel) client() *redis.SentinelClient {
	return redis.NewSentinelClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
}

// StartRedisSentinel starts a master, two replicas of it and three Sentinels
// (`redis-server sentinel.conf --sentinel`), and waits until the replicas are
// in sync and every Sentinel knows both and the other Sentinels. All are
// stopped at the end of the test.
func StartRedisSentinel(t testing.TB) *RedisSentinel {
	t.Helper()
	s := &RedisSentinel{t: t}
	master := StartRedis(t)
	s.Nodes = []*Redis{master,
		StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port)),
		StartRedis(t, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))}
	for _, r := range s.Nodes[1:] {
		Eventually(t, 20*time.Second, func() bool {
			info, err := r.Info("replication")
			return err == nil && strings.Contains(info, "master_link_status:up")
		}, "replica %s never synced with %s", r.Addr(), master.Addr())
	}
	for range 3 {
		s.Sentinels = append(s.Sentinels, startSentinel(t, master.port))
	}
	ctx := context.Background()
	for _, sn := range s.Sentinels {
		sc := sn.client()
		Eventually(t, 30*time.Second, func() bool {
			replicas, err := sc.Replicas(ctx, MasterName).Result()
			if err != nil || len(replicas) != 2 {
				return false
			}
			for _, r := range replicas {
				if strings.Contains(r["flags"], "down") {
					return false
				}
			}
			sentinels, err := sc.Sentinels(ctx, MasterName).Result()
			return err == nil && len(sentinels) == 2
		}, "sentinel %s never saw both replicas and the other sentinels", sn.addr())
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

// Master returns the node the first Sentinel names as master.
func (s *RedisSentinel) Master() *Redis {
	s.t.Helper()
	sc := s.Sentinels[0].client()
	defer sc.Close()
	addr, err := sc.GetMasterAddrByName(context.Background(), MasterName).Result()
	if err != nil || len(addr) != 2 {
		s.t.Fatalf("testenv: SENTINEL GET-MASTER-ADDR-BY-NAME: %v %v", addr, err)
	}
	for _, n := range s.Nodes {
		if n.Addr() == addr[0]+":"+addr[1] {
			return n
		}
	}
	s.t.Fatalf("testenv: sentinel names %v as master, not one of the nodes", addr)
	return nil
}

// waitNewMaster waits until every Sentinel names a master other than old
// and that node says it is one; it returns it.
func (s *RedisSentinel) waitNewMaster(old *Redis, after string) *Redis {
	s.t.Helper()
	ctx := context.Background()
	for _, sn := range s.Sentinels {
		sc := sn.client()
		Eventually(s.t, 30*time.Second, func() bool {
			addr, err := sc.GetMasterAddrByName(ctx, MasterName).Result()
			return err == nil && len(addr) == 2 && addr[0]+":"+addr[1] != old.Addr()
		}, "sentinel %s still names %s as master after %s", sn.addr(), old.Addr(), after)
		_ = sc.Close()
	}
	m := s.Master()
	Eventually(s.t, 30*time.Second, func() bool {
		info, err := m.Info("replication")
		return err == nil && strings.Contains(info, "role:master")
	}, "after %s, %s is not master", after, m.Addr())
	return m
}

// Failover runs SENTINEL FAILOVER on the first Sentinel and waits until
// every Sentinel names a replica as master and that replica says it is one;
// it returns the new master. The old master is turned into a replica by the
// Sentinels some seconds later (after their next INFO of it); it is not
// waited for.
func (s *RedisSentinel) Failover() *Redis {
	s.t.Helper()
	old := s.Master()
	sc := s.Sentinels[0].client()
	defer sc.Close()
	if err := sc.Failover(context.Background(), MasterName).Err(); err != nil {
		s.t.Fatalf("testenv: SENTINEL FAILOVER %s: %v", MasterName, err)
	}
	return s.waitNewMaster(old, "SENTINEL FAILOVER")
}

// KillMaster waits until a replica is in sync with the current master, then
// kills the master (SIGKILL), as a crashed host would, and waits until the
// Sentinels have agreed it is down and promoted a replica. Writes the
// master acknowledged but had not yet sent to a replica are lost, as in
// production. It returns the killed node, which stays down.
func (s *RedisSentinel) KillMaster() *Redis {
	s.t.Helper()
	old := s.Master()
	Eventually(s.t, 30*time.Second, func() bool {
		for _, n := range s.Nodes {
			info, err := n.Info("replication")
			if err == nil && strings.Contains(info, "master_port:"+strconv.Itoa(old.port)+"\r\n") &&
				strings.Contains(info, "master_link_status:up") {
				return true
			}
		}
		return false
	}, "no replica in sync with master %s", old.Addr())
	old.Stop()
	s.waitNewMaster(old, "killing the master")
	return old
}

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

// startSentinel starts a redis-server --sentinel monitoring the master on
// masterPort, on a port of its own; one that exits before answering (its
// port taken meanwhile by another process) is started again on a fresh
// port, up to five times.
func startSentinel(t testing.TB, masterPort int) *sentinel {
	t.Helper()
	for attempt := 1; ; attempt++ {
		dir := t.TempDir()
		port := FreePort(t)
		conf := filepath.Join(dir, "sentinel.conf")
		body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
			"sentinel monitor %s 127.0.0.1 %d 2\n"+
			"sentinel down-after-milliseconds %s 1000\n"+
			"sentinel failover-timeout %s 10000\n",
			port, dir, filepath.Join(dir, "sentinel.log"), MasterName, masterPort, MasterName, MasterName)
		if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		sn := &sentinel{port: port}
		cmd, exited, err := startPinged(t, sn.addr(), "redis-server", conf, "--sentinel")
		if err == nil {
			sn.cmd = cmd
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			return sn
		}
		if attempt == 5 {
			t.Fatalf("testenv: sentinel on %s did not answer: %v", sn.addr(), err)
		}
	}
}
