package testenv

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
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

// A client killed in the middle of a request (its connection reset with the
// body half sent) must not end dynalite for the others: without aborted.js
// dynalite throws ECONNRESET from the request and exits.
func TestDynaliteOutlivesAbortedClient(t *testing.T) {
	d := StartDynalite(t)
	for i := range 3 {
		c, err := net.Dial("tcp", d.Addr())
		if err != nil {
			t.Fatalf("round %d: dial: %v", i, err)
		}
		_, _ = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.0\r\nContent-Length: 1000\r\n\r\n{\"Table", d.Addr())
		_ = c.(*net.TCPConn).SetLinger(0) // close sends RST
		_ = c.Close()

		// A whole request afterwards still gets an HTTP answer.
		c, err = net.DialTimeout("tcp", d.Addr(), 5*time.Second)
		if err != nil {
			t.Fatalf("round %d: dynalite gone after a client was reset: %v", i, err)
		}
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, _ = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: %s\r\nContent-Type: application/x-amz-json-1.0\r\nX-Amz-Target: DynamoDB_20120810.ListTables\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}", d.Addr())
		line, err := bufio.NewReader(c).ReadString('\n')
		_ = c.Close()
		if err != nil || !strings.HasPrefix(line, "HTTP/1.1 ") {
			t.Fatalf("round %d: answer %q, %v; want an HTTP status line", i, line, err)
		}
	}
}

// FreePort never returns one port twice: the chaos suite once gave an
// ingress the same port for its webhook and admin listeners.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for i := range 3000 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("call %d: port %d returned before", i, p)
		}
		seen[p] = true
	}
}
