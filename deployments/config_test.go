package deployments

import (
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/caarlos0/env/v11"

	"github.com/wagate/wagate/internal/config"
)

// configVars returns every variable config.Config reads (WAGATE_*), with its
// default ("" when it has none), as the env library itself lists them.
func configVars(t *testing.T) map[string]string {
	t.Helper()
	params, err := env.GetFieldParamsWithOptions(&config.Config{}, env.Options{Prefix: config.Prefix})
	if err != nil {
		t.Fatalf("list configuration variables: %v", err)
	}
	vars := make(map[string]string, len(params))
	for _, p := range params {
		vars[p.Key] = p.DefaultValue
	}
	if len(vars) < 10 {
		t.Fatalf("only %d configuration variables found: %v", len(vars), slices.Sorted(maps.Keys(vars)))
	}
	return vars
}

// loadConfig parses environ the way config.Load parses the process's
// environment, then validates it: what a command would start with.
func loadConfig(environ map[string]string) (config.Config, error) {
	var c config.Config
	if err := env.ParseWithOptions(&c, env.Options{Prefix: config.Prefix, Environment: environ}); err != nil {
		return config.Config{}, err
	}
	return c, c.Validate()
}

// checkVarNames reports every WAGATE_* name in names that config.Config does
// not read: a typo there would silently leave the default in force.
func checkVarNames(t *testing.T, where string, names []string) {
	t.Helper()
	known := configVars(t)
	for _, n := range names {
		if !strings.HasPrefix(n, config.Prefix) {
			continue
		}
		if _, ok := known[n]; !ok {
			t.Errorf("%s: %s is not a wagate configuration variable (internal/config)", where, n)
		}
	}
}

// addrPort returns the port of a listen address such as ":8080".
func addrPort(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("listen address %q: port: %v", addr, err)
	}
	return port
}

func TestConfigHelpers(t *testing.T) {
	vars := configVars(t)
	for name, def := range map[string]string{"WAGATE_HTTP_ADDR": ":8080", "WAGATE_ADMIN_ADDR": ":8082", "WAGATE_WORKER_HTTP_ADDR": ":8081", "WAGATE_SHUTDOWN_TIMEOUT": "25s"} {
		if vars[name] != def {
			t.Errorf("%s: default %q, want %q", name, vars[name], def)
		}
	}
	if _, err := loadConfig(map[string]string{"WAGATE_HANDLER": "forward"}); err == nil || !strings.Contains(err.Error(), "WAGATE_FORWARD_URL") {
		t.Errorf("forward handler without URL: got %v, want an error naming WAGATE_FORWARD_URL", err)
	}
	if _, err := loadConfig(map[string]string{"WAGATE_ACK_WAIT": "thirty"}); err == nil {
		t.Error("WAGATE_ACK_WAIT=thirty: no error")
	}
	c, err := loadConfig(map[string]string{"WAGATE_MAX_ACK_PENDING": "42"})
	if err != nil || c.MaxAckPending != 42 {
		t.Errorf("WAGATE_MAX_ACK_PENDING=42: got %d, %v", c.MaxAckPending, err)
	}
}

// TestConfigurationTable checks that the table of CONFIGURATION.md (which
// the README links) has one row for every variable of internal/config, and
// no row twice or for a variable that does not exist.
func TestConfigurationTable(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "CONFIGURATION.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	for _, m := range regexp.MustCompile("(?m)^\\| `("+config.Prefix+"[A-Z0-9_]+)` \\|").FindAllSubmatch(readme, -1) {
		rows[string(m[1])]++
	}
	for _, v := range config.Vars() {
		if n := rows[v.Env]; n != 1 {
			t.Errorf("CONFIGURATION.md: %d rows for %s, want 1", n, v.Env)
		}
	}
	known := configVars(t)
	// Read outside internal/config: by wagate send and by internal/failpoint.
	known[config.Prefix+"SEND_URL"], known[config.Prefix+"FAILPOINTS"] = "", ""
	for name := range rows {
		if _, ok := known[name]; !ok {
			t.Errorf("CONFIGURATION.md: %s is not a configuration variable", name)
		}
	}
}
