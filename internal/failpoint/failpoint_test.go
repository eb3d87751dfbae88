package failpoint

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want map[Point]action
	}{
		{"", map[Point]action{}},
		{" , ", map[Point]action{}},
		{"ingest-after-claim=0.02", map[Point]action{IngestAfterClaim: {kill: true, prob: 0.02}}},
		{"worker-before-finish=1", map[Point]action{WorkerBeforeFinish: {kill: true, prob: 1}}},
		{"ingest-after-puback=300ms", map[Point]action{IngestAfterPubAck: {sleep: 300 * time.Millisecond, prob: 1}}},
		{" ingest-after-puback = 2s@0.25 , worker-after-finish=0.5", map[Point]action{
			IngestAfterPubAck: {sleep: 2 * time.Second, prob: 0.25},
			WorkerAfterFinish: {kill: true, prob: 0.5},
		}},
	} {
		got, err := parse(tc.spec)
		if err != nil {
			t.Errorf("parse(%q): %v", tc.spec, err)
			continue
		}
		if len(got) != len(tc.want) {
			t.Errorf("parse(%q) = %v, want %v", tc.spec, got, tc.want)
			continue
		}
		for p, a := range tc.want {
			if got[p] != a {
				t.Errorf("parse(%q)[%s] = %+v, want %+v", tc.spec, p, got[p], a)
			}
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for spec, wantErr := range map[string]string{
		"ingest-after-claim":                          "want <point>=<action>",
		"ingest-after-clam=0.1":                       "unknown point",
		"ingest-after-claim=0":                        "not in (0, 1]",
		"ingest-after-claim=1.5":                      "not in (0, 1]",
		"ingest-after-claim=-0.1":                     "not in (0, 1]",
		"ingest-after-claim=NaN":                      "not in (0, 1]",
		"ingest-after-claim=soon":                     "want a kill probability",
		"ingest-after-claim=-1s":                      "want a kill probability",
		"ingest-after-claim=1s@2":                     "not a number in (0, 1]",
		"ingest-after-claim=1s@x":                     "not a number in (0, 1]",
		"ingest-after-claim=0.1,ingest-after-claim=1": "given twice",
	} {
		_, err := parse(spec)
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("parse(%q) = %v, want an error containing %q", spec, err, wantErr)
		}
	}
}

// TestHitUnset checks that an unconfigured point does nothing.
func TestHitUnset(t *testing.T) {
	setup(t, "")
	if active.Load() {
		t.Fatal("active with an empty spec")
	}
	for _, p := range points {
		Hit(p) // returns: nothing is configured
	}
	setup(t, "worker-after-finish=1")
	Hit(WorkerBeforeFinish) // another point: returns
}

// TestHitSleeps checks a sleep action sleeps at least its duration.
func TestHitSleeps(t *testing.T) {
	setup(t, "ingest-after-puback=30ms")
	start := time.Now()
	Hit(IngestAfterPubAck)
	if d := time.Since(start); d < 30*time.Millisecond {
		t.Errorf("Hit returned after %v, want at least 30ms", d)
	}
}

// TestHitKills runs this test binary with a kill failpoint and checks it dies
// of SIGKILL at the point, after saying so on stderr.
func TestHitKills(t *testing.T) {
	if os.Getenv("FAILPOINT_CHILD") == "1" {
		Hit(WorkerBeforeFinish)
		os.Stdout.WriteString("survived\n")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestHitKills$")
	cmd.Env = append(os.Environ(), "FAILPOINT_CHILD=1", Env+"=worker-before-finish=1")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Fatalf("child: %v, want it killed; stdout %q", err, stdout.String())
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	if !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("child ended with %v, want SIGKILL", exit)
	}
	if strings.Contains(stdout.String(), "survived") {
		t.Error("the child ran past the failpoint")
	}
	if !strings.Contains(stderr.String(), "failpoint: worker-before-finish: kill\n") {
		t.Errorf("child stderr %q lacks the kill line", stderr.String())
	}
}

// TestBadSpecExits checks a malformed WAGATE_FAILPOINTS stops the process at
// start-up with status 2 and the reason.
func TestBadSpecExits(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), Env+"=worker-before-finsh=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("child: %v, want exit status 2; output %q", err, out)
	}
	if !strings.Contains(string(out), `unknown point "worker-before-finsh"`) {
		t.Errorf("output %q does not name the unknown point", out)
	}
}

// setup configures spec for the test and clears it afterwards.
func setup(t *testing.T, spec string) {
	t.Helper()
	if err := configure(spec); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = configure("") })
}
