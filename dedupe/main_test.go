package dedupe_test

import (
	"context"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisOptions reach the Redis the examples run against, found by TestMain:
// WAGATE_TEST_REDIS_URL when set, else a private redis-server from PATH.
var redisOptions *redis.Options

// TestMain finds a Redis for the examples, which cannot ask testenv for one.
// With none, examples are skipped (failed under CI=true, like every test).
func TestMain(m *testing.M) {
	flag.Parse()
	redis.SetLogger(quietLogger{})
	stop, err := exampleRedis()
	if err != nil {
		if os.Getenv("CI") == "true" {
			fmt.Fprintf(os.Stderr, "dedupe: no Redis for the examples: %v (CI=true: never skipped)\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "dedupe: no Redis for the examples, skipping them: %v\n", err)
		skip := "^Example"
		if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
			skip = prev + "|" + skip
		}
		_ = flag.Set("test.skip", skip)
	}
	code := m.Run()
	stop()
	os.Exit(code)
}

// quietLogger drops go-redis's reports of refused connections, which the
// tests that stop Redis cause on purpose, and prints the rest.
type quietLogger struct{}

func (quietLogger) Printf(_ context.Context, format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	if !strings.Contains(msg, "connection refused") {
		fmt.Fprintln(os.Stderr, "redis:", msg)
	}
}

// exampleRedis sets redisOptions, starting a redis-server if it must, and
// returns what stops it.
func exampleRedis() (stop func(), err error) {
	stop = func() {}
	if u := os.Getenv("WAGATE_TEST_REDIS_URL"); u != "" {
		redisOptions, err = redis.ParseURL(u)
		return stop, err
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		return stop, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return stop, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir, err := os.MkdirTemp("", "wagate-dedupe-example")
	if err != nil {
		return stop, err
	}
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return stop, err
	}
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		os.RemoveAll(dir)
	}
	redisOptions = &redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)}
	c := redis.NewClient(redisOptions)
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); ; {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return stop, nil
		}
		if time.Now().After(deadline) {
			stop()
			return func() {}, fmt.Errorf("redis-server on port %d: %w", port, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
