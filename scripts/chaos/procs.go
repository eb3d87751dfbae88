package chaos

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries are the paths of the programs the suite runs, built once per
// test binary: cmd/ingress, cmd/worker and nats-server.
type Binaries struct {
	Ingress, Worker, Wagate, NATSServer string
}

// Build compiles cmd/ingress, cmd/worker and cmd/wagate from the module at root, and
// nats-server from the nats-server/v2 module the project requires, into dir.
func Build(root, dir string) (Binaries, error) {
	b := Binaries{
		Ingress:    filepath.Join(dir, "ingress"),
		Worker:     filepath.Join(dir, "worker"),
		Wagate:     filepath.Join(dir, "wagate"),
		NATSServer: filepath.Join(dir, "nats-server"),
	}
	for _, args := range [][]string{
		{"build", "-o", dir + string(os.PathSeparator), "./cmd/ingress", "./cmd/worker", "./cmd/wagate"},
		{"build", "-o", b.NATSServer, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return b, fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return b, nil
}

// exit is how one incarnation of a process ended: the signal that killed
// it, or its exit code.
type exit struct {
	signal syscall.Signal
	code   int
}

// Proc is one program run as a separate process, with its logs in files
// (one per incarnation). Its methods are safe for concurrent use; its
// fields must be set before Start and not changed after.
type Proc struct {
	// Name names the process in logs and log files.
	Name string
	// Bin is the program; Args its arguments.
	Bin  string
	Args []string
	// Env is added to the suite's environment, from which every WAGATE_*
	// and OTEL_* variable is removed.
	Env []string
	// LogDir holds <Name>.<incarnation>.log: stdout and stderr.
	LogDir string
	// Restart starts the process again, after RestartDelay, whenever it
	// dies without the suite asking (a failpoint kill), as a supervisor
	// would.
	Restart      bool
	RestartDelay time.Duration

	mu      sync.Mutex
	cmd     *exec.Cmd
	done    chan struct{} // closed when cmd has exited
	n       int           // incarnations started
	exits   []exit
	want    bool // the suite wants it running
	closing bool
	wg      sync.WaitGroup
}

// Start starts the process (if it is not running) and returns once it is
// started, not ready.
func (p *Proc) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.want = true
	return p.startLocked()
}

func (p *Proc) startLocked() error {
	if p.cmd != nil || p.closing {
		return nil
	}
	p.n++
	f, err := os.Create(filepath.Join(p.LogDir, fmt.Sprintf("%s.%d.log", p.Name, p.n)))
	if err != nil {
		return err
	}
	cmd := exec.Command(p.Bin, p.Args...)
	cmd.Env = append(hermeticEnv(), p.Env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", p.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done = cmd, done
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		err := cmd.Wait()
		f.Close()
		p.exited(cmd, err)
		close(done)
	}()
	return nil
}

// exited records the end of cmd and restarts the process if it died on its
// own and Restart is set.
func (p *Proc) exited(cmd *exec.Cmd, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var e exit
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			e.signal = ws.Signal()
		} else {
			e.code = ee.ExitCode()
		}
	}
	p.exits = append(p.exits, e)
	if p.cmd == cmd {
		p.cmd = nil
	}
	if !p.want || !p.Restart || p.closing {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		time.Sleep(p.RestartDelay) // a crashed process comes back after a pause, as under a supervisor
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.want {
			_ = p.startLocked()
		}
	}()
}

// Kill sends SIGKILL and waits for the process to exit. It stays down until
// Start.
func (p *Proc) Kill() { p.signal(syscall.SIGKILL, 0) }

// Stop sends SIGTERM and waits up to timeout for the process to exit, then
// kills it. It returns how the process ended.
func (p *Proc) Stop(timeout time.Duration) (code int, signal syscall.Signal, err error) {
	if !p.signal(syscall.SIGTERM, timeout) {
		return -1, 0, fmt.Errorf("%s did not exit within %v of SIGTERM", p.Name, timeout)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.exits) == 0 {
		return -1, 0, fmt.Errorf("%s never ran", p.Name)
	}
	e := p.exits[len(p.exits)-1]
	return e.code, e.signal, nil
}

// signal sends sig to the running incarnation and waits for it to exit, up
// to timeout (0: no bound); after timeout it kills it. It reports whether the
// process exited within timeout.
func (p *Proc) signal(sig syscall.Signal, timeout time.Duration) bool {
	p.mu.Lock()
	p.want = false
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return true
	}
	_ = cmd.Process.Signal(sig)
	if timeout <= 0 {
		<-done
		return true
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		_ = cmd.Process.Kill()
		<-done
		return false
	}
}

// Close kills the process for good and waits for every goroutine.
func (p *Proc) Close() {
	p.mu.Lock()
	p.closing = true
	p.mu.Unlock()
	p.Kill()
	p.wg.Wait()
}

// Logs returns every incarnation's log, concatenated.
func (p *Proc) Logs() string {
	p.mu.Lock()
	n := p.n
	p.mu.Unlock()
	var b strings.Builder
	for i := 1; i <= n; i++ {
		data, _ := os.ReadFile(filepath.Join(p.LogDir, fmt.Sprintf("%s.%d.log", p.Name, i)))
		fmt.Fprintf(&b, "=== %s #%d\n", p.Name, i)
		b.Write(data)
	}
	return b.String()
}

// hermeticEnv is the suite's environment without WAGATE_* and OTEL_*
// variables, so that the processes see only the configuration a scenario
// gives them.
func hermeticEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "WAGATE_") || strings.HasPrefix(kv, "OTEL_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// waitHTTP polls url until it answers 200 or ctx ends.
func waitHTTP(ctx context.Context, url string) error {
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %v (last error %v)", url, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
