package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wagate/wagate/internal/testenv"
)

// unsetenv unsets the WAGATE_* variables names for the test, restoring them
// after.
func unsetenv(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		t.Setenv(n, "")
		_ = os.Unsetenv(n)
	}
}

// TestToolsFindTheirDev checks that wagate key, with no NATS or store
// configured, reads the wagate dev whose data folder it is given (from the
// record dev writes there), and fails loudly when that dev is gone: it used
// to read the default NATS and Redis and report "absent" with exit 0.
func TestToolsFindTheirDev(t *testing.T) {
	if testing.Short() {
		t.Skip("runs wagate dev: skipped in -short mode")
	}
	data := t.TempDir()
	unsetenv(t, "WAGATE_NATS_URL", "WAGATE_REDIS_URL", "WAGATE_DEDUPE_BACKEND", "WAGATE_HANDLER", "WAGATE_FORWARD_URL", "WAGATE_META_APP_SECRET")
	t.Setenv("WAGATE_DATA_DIR", data)
	t.Setenv("WAGATE_HTTP_ADDR", "127.0.0.1:0")

	ctx, cancel := context.WithCancel(context.Background())
	var devOut syncBuffer
	var wg sync.WaitGroup
	wg.Add(1)
	var devErr error
	go func() { defer wg.Done(); devErr = runDev(ctx, &devOut) }()
	t.Cleanup(func() { cancel(); wg.Wait() })

	record := filepath.Join(data, devStateFile)
	testenv.Eventually(t, 30*time.Second, func() bool { _, err := os.Stat(record); return err == nil }, "wagate dev wrote no %s", record)
	st, ok, err := readDevState(data)
	if err != nil || !ok {
		t.Fatalf("record: ok %t err %v", ok, err)
	}
	out, err := runWagate(t, "key", "wa:AAAAAAAAAAAAAAAAAAAAAA")
	if err != nil {
		t.Fatalf("wagate key against dev: %v\n%s", err, out)
	}
	if !strings.Contains(out, "JetStream key-value bucket") || !strings.Contains(out, st.NATSURL) || !strings.Contains(out, "state    absent") {
		t.Errorf("wagate key did not read dev's store at %s:\n%s", st.NATSURL, out)
	}
	if !strings.Contains(devOut.String(), "demo default") {
		t.Errorf("dev does not say its log handler is the demo default:\n%s", devOut.String())
	}

	cancel()
	wg.Wait()
	if devErr != nil {
		t.Fatalf("dev: %v", devErr)
	}

	// dev has stopped: its record stays, and tools fail, naming it, instead
	// of reading the default servers.
	out, err = runWagate(t, "key", "wa:AAAAAAAAAAAAAAAAAAAAAA")
	if err == nil || !strings.Contains(err.Error(), "wagate dev is not running") || !strings.Contains(err.Error(), st.NATSURL) {
		t.Errorf("wagate key after dev stopped: err %v, want one naming the stopped dev at %s; output:\n%s", err, st.NATSURL, out)
	}
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A tool reading dev's record while dev writes it sees the whole record,
// never a part (make test once read it empty: "unexpected end of JSON
// input").
func TestDevStateWrittenWhole(t *testing.T) {
	dir := t.TempDir()
	st := devState{PID: 1, NATSURL: "nats://127.0.0.1:4223", WebhookURL: "http://127.0.0.1:8080", DedupeBackend: "nats",
		EventsStream: "WAGATE_EVENTS", DLQStream: "WAGATE_DLQ", Consumer: "wagate-workers"}
	if err := writeDevState(dir, st); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var werr error
	go func() {
		defer close(done)
		for i := range 500 {
			st.PID = i
			if werr = writeDevState(dir, st); werr != nil {
				return
			}
		}
	}()
	for reads := 0; ; reads++ {
		select {
		case <-done:
			if werr != nil {
				t.Fatalf("writeDevState: %v", werr)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("%d files in the data folder after the writes, want only %s", len(entries), devStateFile)
			}
			return
		default:
		}
		if got, ok, err := readDevState(dir); err != nil || !ok || got.NATSURL != st.NATSURL {
			t.Fatalf("read %d while dev writes: %+v, ok %t, %v", reads, got, ok, err)
		}
	}
}
