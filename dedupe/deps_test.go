package dedupe_test

import (
	"os/exec"
	"strings"
	"testing"
)

// testOnly names modules that only tests and tools need: a program
// embedding wagate's dedupe contract (dedupe, dedupe/dedupetest), the
// worker or the ingress must not inherit them.
var testOnly = []string{
	"github.com/testcontainers/",
	"github.com/docker/",
	"github.com/moby/",
	"github.com/nats-io/nats-server/",
	"k8s.io/",
	"sigs.k8s.io/",
	"github.com/compose-spec/",
	"gonum.org/",
	"github.com/tsenart/vegeta",
	"github.com/prometheus/prometheus",
}

func TestNoTestDependencies(t *testing.T) {
	for _, pkgs := range [][]string{{"./...", "./dedupetest"}, {"../worker", "../ingest"}} {
		out, err := exec.Command("go", append([]string{"list", "-deps"}, pkgs...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %v: %v\n%s", pkgs, err, out)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 50 {
			t.Fatalf("go list -deps %v listed only %d packages:\n%s", pkgs, len(deps), out)
		}
		for _, d := range deps {
			for _, bad := range testOnly {
				if strings.HasPrefix(d, bad) {
					t.Errorf("%v depends on %s", pkgs, d)
				}
			}
		}
	}
}
