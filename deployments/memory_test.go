package deployments

import (
	"strconv"
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/wagate/wagate/ingest"
)

// The memory budget of the ingress (deployments/README.md, Security): the bodies it holds
// at once (WAGATE_BODY_MEMORY) plus the process's own working set stay under
// the Go runtime's soft limit (GOMEMLIMIT), which leaves room below the
// container's limit for the memory the runtime does not count.
const (
	// workingSet is the ingress's own memory besides bodies: parsed events,
	// encoded messages, connections, the runtime. Measured: about 30 MiB of
	// RSS idle; a peak RSS of 117–155 MiB, 64 MiB of bodies included, under
	// cmd's TestHostileBodiesMemory (120 concurrent 4 MiB bodies).
	workingSet = 128 << 20
	// runtimeRoom is kept between GOMEMLIMIT and the container's limit.
	runtimeRoom = 16 << 20
)

// checkMemory checks one ingress container's memory settings against its
// configuration: BodyMemory + workingSet ≤ GOMEMLIMIT ≤ limit − runtimeRoom.
func checkMemory(t *testing.T, where string, bodyMemory, limit int64, gomemlimit string) {
	t.Helper()
	if gomemlimit == "" {
		t.Errorf("%s: no GOMEMLIMIT: the runtime does not know the container's limit", where)
		return
	}
	soft, err := parseGoMemLimit(gomemlimit)
	if err != nil {
		t.Errorf("%s: GOMEMLIMIT %q: %v", where, gomemlimit, err)
		return
	}
	if limit <= 0 {
		t.Errorf("%s: no memory limit", where)
		return
	}
	if need := bodyMemory + workingSet; soft < need {
		t.Errorf("%s: GOMEMLIMIT %s (%d MiB) below body memory %d MiB + working set %d MiB",
			where, gomemlimit, soft>>20, bodyMemory>>20, workingSet>>20)
	}
	if soft > limit-runtimeRoom {
		t.Errorf("%s: GOMEMLIMIT %s (%d MiB) leaves less than %d MiB below the container's limit of %d MiB",
			where, gomemlimit, soft>>20, runtimeRoom>>20, limit>>20)
	}
	t.Logf("%s: body memory %d MiB + working set %d MiB ≤ GOMEMLIMIT %d MiB ≤ limit %d MiB − %d MiB",
		where, bodyMemory>>20, workingSet>>20, soft>>20, limit>>20, runtimeRoom>>20)
}

// parseGoMemLimit parses a GOMEMLIMIT value: bytes, with an optional B, KiB,
// MiB, GiB or TiB suffix (runtime/debug.SetMemoryLimit's syntax).
func parseGoMemLimit(s string) (int64, error) {
	units := []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}
	for _, u := range units {
		if len(s) > len(u.suffix) && s[len(s)-len(u.suffix):] == u.suffix {
			n, err := strconv.ParseInt(s[:len(s)-len(u.suffix)], 10, 64)
			return n << u.shift, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

// The configuration's default body memory is the ingress package's, and the
// Kubernetes builds and the compose file give the ingress room for it.
func TestIngressMemoryBudget(t *testing.T) {
	def, err := strconv.ParseInt(configVars(t)["WAGATE_BODY_MEMORY"], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	if def != ingest.DefaultBodyMemory {
		t.Errorf("WAGATE_BODY_MEMORY default %d, ingest.DefaultBodyMemory %d: they must agree", def, ingest.DefaultBodyMemory)
	}
	for _, dir := range []string{"k8s/base", "k8s/overlays/production"} {
		_, ingress, _ := checkManifests(t, dir)
		var gomemlimit string
		for _, e := range ingress.container.Env {
			if e.Name == "GOMEMLIMIT" {
				if e.ValueFrom != nil {
					t.Errorf("%s: GOMEMLIMIT from %v: set a value below the limit, not the limit itself", dir, e.ValueFrom)
				}
				gomemlimit = e.Value
			}
		}
		lim := ingress.container.Resources.Limits.Memory()
		if lim == nil {
			lim = resource.NewQuantity(0, resource.BinarySI)
		}
		checkMemory(t, dir, ingress.cfg.BodyMemory, lim.Value(), gomemlimit)
	}

	p, err := loadCompose(t, map[string]string{"WAGATE_META_APP_SECRET": "s", "WAGATE_META_VERIFY_TOKEN": "v"})
	if err != nil {
		t.Fatal(err)
	}
	s, err := p.GetService("ingress")
	if err != nil {
		t.Fatal(err)
	}
	environ := map[string]string{}
	for k, v := range s.Environment {
		if v != nil {
			environ[k] = *v
		}
	}
	cfg, err := loadConfig(environ)
	if err != nil {
		t.Fatal(err)
	}
	checkMemory(t, "compose ingress", cfg.BodyMemory, int64(s.MemLimit), environ["GOMEMLIMIT"])
}
