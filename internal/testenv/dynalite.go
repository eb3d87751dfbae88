package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// Dynalite is a private dynalite process (a DynamoDB-compatible server on
// Node.js, in memory), on a free loopback port, stopped at the end of the
// test. It has DynamoDB's API, not its latency or durability.
type Dynalite struct {
	t    testing.TB
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
	logs *os.File
}

// DynaliteDir is where .ci/run installs the pinned dynalite (npm ci, from
// the package.json and package-lock.json committed there).
func DynaliteDir() string {
	if d := os.Getenv("WAGATE_TEST_DYNALITE_DIR"); d != "" {
		return d
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return filepath.Join("internal", "testenv", "dynalite")
	}
	return filepath.Join(filepath.Dir(file), "dynalite")
}

// DynamoDBEndpoint returns the endpoint URL of a real DynamoDB-compatible
// server for t: WAGATE_TEST_DYNAMODB_ENDPOINT when set (tests use tables of
// their own there), else a private dynalite started by StartDynalite.
func DynamoDBEndpoint(t testing.TB) string {
	t.Helper()
	if u := os.Getenv("WAGATE_TEST_DYNAMODB_ENDPOINT"); u != "" {
		return u
	}
	return StartDynalite(t).Endpoint()
}

// StartDynalite starts dynalite from DynaliteDir on a free loopback port and
// waits until it accepts connections. Without node or the installed package
// the test is skipped, or fails under CI=true.
func StartDynalite(t testing.TB) *Dynalite {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "no DynamoDB: WAGATE_TEST_DYNAMODB_ENDPOINT unset and no node on PATH")
	}
	cli := filepath.Join(DynaliteDir(), "node_modules", "dynalite", "cli.js")
	if _, err := os.Stat(cli); err != nil {
		unavailable(t, "no DynamoDB: dynalite is not installed in %s (run: npm ci --prefix %s)", DynaliteDir(), DynaliteDir())
	}
	logs, err := os.Create(filepath.Join(t.TempDir(), "dynalite.log"))
	if err != nil {
		t.Fatalf("testenv: dynalite log: %v", err)
	}
	d := &Dynalite{t: t, port: FreePort(t), logs: logs}
	// aborted.js keeps dynalite up when a client is killed mid-request.
	_, src, _, _ := runtime.Caller(0)
	cmd := exec.Command(node, "--require", filepath.Join(filepath.Dir(src), "dynalite", "aborted.js"), cli, "--host", "127.0.0.1", "--port", strconv.Itoa(d.port),
		"--createTableMs", "0", "--deleteTableMs", "0", "--updateTableMs", "0")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		unavailable(t, "start dynalite: %v", err)
	}
	d.cmd = cmd
	t.Cleanup(d.Stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", d.Addr(), time.Second)
		if err == nil {
			c.Close()
			return d
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logs.Name())
			t.Fatalf("testenv: dynalite on %s did not start: %v\n%s", d.Addr(), err, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Addr is the server's host:port.
func (d *Dynalite) Addr() string { return "127.0.0.1:" + strconv.Itoa(d.port) }

// Endpoint is the server's http:// URL, for the SDK's BaseEndpoint.
func (d *Dynalite) Endpoint() string { return fmt.Sprintf("http://%s", d.Addr()) }

// Stop kills the server and waits for it to exit; its tables are lost.
func (d *Dynalite) Stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cmd == nil {
		return
	}
	_ = d.cmd.Process.Kill()
	_ = d.cmd.Wait()
	d.cmd = nil
	_ = d.logs.Close()
}
