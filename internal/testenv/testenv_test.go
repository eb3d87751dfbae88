package testenv

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
)

func TestRedisStopStart(t *testing.T) {
	r := StartRedis(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	defer c.Close()
	ctx := context.Background()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatal("ping answered while redis-server was stopped")
	}
	r.Start()
	// No persistence: the key is gone after a restart.
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Fatalf("after restart: exists=%d err=%v, want 0, nil", n, err)
	}
}

func TestNATSJetStreamSurvivesRestart(t *testing.T) {
	n := StartNATS(t)
	nc, err := nats.Connect(n.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("x")); err != nil {
		t.Fatal(err)
	}
	n.Shutdown()
	n.Start()
	Eventually(t, 10*time.Second, func() bool {
		s, err := js.Stream(ctx, "T")
		return err == nil && s.CachedInfo().State.Msgs == 1
	}, "stream T should hold its message after a restart")
}

// A port FreePort gave may be taken by another process before redis-server
// binds it: the first Start moves to a fresh port, and to fresh ports for the
// port flags among its arguments, instead of waiting and failing.
func TestRedisStartMovesOffATakenPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	taken := ln.Addr().(*net.TCPAddr).Port
	r := &Redis{t: t, port: taken, dir: t.TempDir(), args: []string{"--cluster-enabled", "yes", "--cluster-port", strconv.Itoa(taken)}}
	r.Start()
	t.Cleanup(r.Stop)
	if r.port == taken || r.Arg("--cluster-port") == strconv.Itoa(taken) {
		t.Fatalf("started on %s with cluster port %s: the taken port %d was kept", r.Addr(), r.Arg("--cluster-port"), taken)
	}
	if _, err := r.Command("PING"); err != nil {
		t.Fatalf("PING %s: %v", r.Addr(), err)
	}
}
