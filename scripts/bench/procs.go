package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// process is a server the benchmark started; stop ends it.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string // path of its combined output
}

// startProcess starts bin with args and extra environment, its output going
// to a log file in dir.
func startProcess(dir, name, bin string, env []string, args ...string) (*process, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &process{name: name, cmd: cmd, log: logPath}, nil
}

// stop sends SIGTERM, then SIGKILL after 5 s, and waits.
func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// peakRSS is the process's resident set high-water mark (VmHWM), in bytes.
func (p *process) peakRSS() (int64, error) {
	return procStatusBytes(p.cmd.Process.Pid, "VmHWM:")
}

// procStatusBytes reads a "kB" field of /proc/<pid>/status, in bytes.
func procStatusBytes(pid int, field string) (int64, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), field)
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%s%s: %w", field, rest, err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// freePort returns a TCP port free on loopback now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// moduleRoot returns the directory of the wagate module, whose commands the
// benchmark builds: the scripts module replaces github.com/wagate/wagate
// with the folder above it.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/wagate/wagate").Output()
	if err != nil {
		return "", fmt.Errorf("go list -m github.com/wagate/wagate (run the benchmark from the scripts module): %w", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", errors.New("go list -m github.com/wagate/wagate: no directory (run the benchmark from the scripts module)")
	}
	return dir, nil
}

// build compiles the packages of module root named by pkgs (binary name to
// package path) into dir, concurrently, and returns each binary's path.
func build(ctx context.Context, root, dir string, pkgs map[string]string) (map[string]string, error) {
	bins := make(map[string]string, len(pkgs))
	errs := make(chan error, len(pkgs))
	for name, pkg := range pkgs {
		bin := filepath.Join(dir, name)
		bins[name] = bin
		go func() {
			cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				errs <- fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
				return
			}
			errs <- nil
		}()
	}
	var err error
	for range pkgs {
		err = errors.Join(err, <-errs)
	}
	return bins, err
}

// startRedis starts a private redis-server without persistence on a free
// loopback port and waits until it answers.
func startRedis(ctx context.Context, dir, name string) (*process, string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, "", fmt.Errorf("redis-server not on PATH: %w", err)
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	p, err := startProcess(dir, name, bin, nil, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir)
	if err != nil {
		return nil, "", err
	}
	url := "redis://127.0.0.1:" + strconv.Itoa(port) + "/0"
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(port)})
	defer c.Close()
	if err := poll(ctx, 10*time.Second, func() bool { return c.Ping(ctx).Err() == nil }); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("%s did not answer (log %s): %w", name, p.log, err)
	}
	return p, url, nil
}

// startNATS starts the NATS server binary with JetStream on a free loopback
// port, storing in a directory of dir, and waits until it accepts
// connections.
func startNATS(ctx context.Context, dir, bin string) (*process, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	store := filepath.Join(dir, "jetstream")
	p, err := startProcess(dir, "nats-server", bin, nil, "-js", "-sd", store, "-a", "127.0.0.1", "-p", strconv.Itoa(port))
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if err := poll(ctx, 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("nats-server did not listen (log %s): %w", p.log, err)
	}
	return p, "nats://" + addr, nil
}

// startIngress runs the ingress binary on a free loopback port against
// redisURL and natsURL, and waits until /readyz answers 200.
func startIngress(ctx context.Context, dir, bin, redisURL, natsURL, secret string, extra ...string) (*process, string, error) {
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	adminPort, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	admin := "127.0.0.1:" + strconv.Itoa(adminPort)
	p, err := startProcess(dir, "ingress", bin, append([]string{
		"WAGATE_REDIS_URL=" + redisURL,
		"WAGATE_NATS_URL=" + natsURL,
		"WAGATE_HTTP_ADDR=" + addr,
		"WAGATE_ADMIN_ADDR=" + admin,
		"WAGATE_META_APP_SECRET=" + secret,
	}, extra...))
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := waitHTTP(ctx, "http://"+admin+"/readyz"); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("ingress not ready (log %s): %w", p.log, err)
	}
	return p, base, nil
}

// startEcho runs this program again as the echo floor server (see
// serveEchoFromEnv) on a free loopback port.
func startEcho(ctx context.Context, dir string) (*process, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	port, err := freePort()
	if err != nil {
		return nil, "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	p, err := startProcess(dir, "echo", self, []string{echoAddrEnv + "=" + addr})
	if err != nil {
		return nil, "", err
	}
	base := "http://" + addr
	if err := waitHTTP(ctx, base+"/healthz"); err != nil {
		p.stop()
		return nil, "", fmt.Errorf("echo server not ready (log %s): %w", p.log, err)
	}
	return p, base, nil
}

// waitHTTP polls url until it answers 200, for up to 30 s.
func waitHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	return poll(ctx, 30*time.Second, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// poll calls cond every 20 ms until it returns true, timeout passes or ctx
// ends.
func poll(ctx context.Context, timeout time.Duration, cond func() bool) error {
	return pollEvery(ctx, timeout, 20*time.Millisecond, cond)
}
