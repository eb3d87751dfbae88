package dedupe_test

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// testOnly names modules that only wagate's own tests need
// (internal/testenv) or that only the wagate command embeds (nats-server,
// for wagate dev): wagate's go.mod requires them, but a program embedding
// wagate's dedupe contract (dedupe, dedupe/dedupetest), the worker or the
// ingress must not compile any of their packages.
var testOnly = []string{
	"github.com/testcontainers/",
	"github.com/docker/",
	"github.com/moby/",
	"github.com/nats-io/nats-server/",
}

// toolOnly names modules that only the benchmark and the fault suite
// (scripts/go.mod) and the manifest tests (deployments/go.mod) need.
// wagate's go.mod must not require them at all, not even as indirect: a
// program that requires wagate loads every requirement of wagate's go.mod
// into its own module graph, where they take part in choosing its versions.
var toolOnly = []string{
	"k8s.io/",
	"sigs.k8s.io/",
	"github.com/compose-spec/",
	"gonum.org/v1/plot",
	"github.com/tsenart/vegeta",
	"github.com/prometheus/prometheus",
}

func matches(path string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(path, p) })
}

// TestNoTestDependencies lists the packages that the dedupe packages, and a
// program importing only worker and ingest, compile, with the module of
// each: none may come from a test or tool module.
func TestNoTestDependencies(t *testing.T) {
	for _, pkgs := range [][]string{{"./...", "./dedupetest"}, {"../worker", "../ingest"}} {
		args := append([]string{"list", "-deps", "-f", "{{.ImportPath}} {{with .Module}}{{.Path}}{{end}}"}, pkgs...)
		out, err := exec.Command("go", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %v: %v\n%s", pkgs, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		var modules []string
		for _, l := range lines {
			pkg, mod, _ := strings.Cut(l, " ")
			if mod == "" {
				continue // the standard library
			}
			if matches(mod, testOnly) || matches(mod, toolOnly) {
				t.Errorf("%v depends on %s of module %s", pkgs, pkg, mod)
			}
			if !slices.Contains(modules, mod) {
				modules = append(modules, mod)
			}
		}
		if len(lines) < 50 || !slices.Contains(modules, "github.com/wagate/wagate") || !slices.Contains(modules, "github.com/nats-io/nats.go") {
			t.Fatalf("go list -deps %v listed only %d packages of modules %v:\n%s", pkgs, len(lines), modules, out)
		}
	}
}

// requires returns the modules that the go.mod in dir, of module path, requires.
func requires(t *testing.T, dir, path string) []string {
	t.Helper()
	c := exec.Command("go", "mod", "edit", "-json")
	c.Dir = dir
	out, err := c.Output()
	if err != nil {
		t.Fatalf("go mod edit -json in %s: %v", dir, err)
	}
	var mod struct {
		Module  struct{ Path string }
		Require []struct{ Path string }
	}
	if err := json.Unmarshal(out, &mod); err != nil {
		t.Fatalf("go mod edit -json in %s: %v\n%s", dir, err, out)
	}
	if mod.Module.Path != path {
		t.Fatalf("go mod edit -json in %s: module %q, want %q", dir, mod.Module.Path, path)
	}
	var paths []string
	for _, r := range mod.Require {
		paths = append(paths, r.Path)
	}
	t.Logf("%s requires %d modules", path, len(paths))
	return paths
}

// TestGoModRequiresNoToolModules reads wagate's go.mod, and the go.mod of
// the nested modules that hold the benchmark, the fault suite and the
// manifest tests: wagate's requires none of the tool modules, and each tool
// module is required by a nested one (so that this list names real
// dependencies, kept where they belong).
func TestGoModRequiresNoToolModules(t *testing.T) {
	core := requires(t, "..", "github.com/wagate/wagate")
	if !slices.Contains(core, "github.com/redis/go-redis/v9") {
		t.Fatalf("../go.mod requires %v, not go-redis: not wagate's go.mod?", core)
	}
	for _, m := range core {
		if matches(m, toolOnly) {
			t.Errorf("wagate's go.mod requires %s, which only scripts/ or deployments/ use: require it in their go.mod", m)
		}
	}
	nested := append(requires(t, filepath.Join("..", "scripts"), "github.com/wagate/wagate/scripts"),
		requires(t, filepath.Join("..", "deployments"), "github.com/wagate/wagate/deployments")...)
	for _, p := range toolOnly {
		if !slices.ContainsFunc(nested, func(m string) bool { return strings.HasPrefix(m, p) }) {
			t.Errorf("no nested module requires %s: remove it from toolOnly", p)
		}
	}
}
