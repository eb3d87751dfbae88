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
	"github.com/wagate/wagate/messages/streams"
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

// configurationTable is the table of every setting: the README links it.
const configurationTable = "CONFIGURATION.md"

// TestConfigurationTable checks that CONFIGURATION.md has one row for every
// variable of internal/config, no row twice or for a variable that does not
// exist, and in each row the default the struct declares ("—" for none), and
// that the README links the table.
func TestConfigurationTable(t *testing.T) {
	table, err := os.ReadFile(configurationTable)
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]int{}
	defaults := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `("+config.Prefix+"[A-Z0-9_]+)` \\| ([^|]*) \\|").FindAllSubmatch(table, -1) {
		rows[string(m[1])]++
		defaults[string(m[1])] = string(m[2])
	}
	// Defaults the struct leaves empty because they live with their domain.
	backoff := make([]string, len(streams.DefaultBackOff))
	for i, d := range streams.DefaultBackOff {
		backoff[i] = d.String()
		if strings.HasSuffix(backoff[i], "m0s") {
			backoff[i] = strings.TrimSuffix(backoff[i], "0s") // 1m0s → 1m
		}
	}
	domainDefaults := map[string]string{config.Prefix + "BACKOFF": strings.Join(backoff, ",")}
	for _, v := range config.Vars() {
		if n := rows[v.Env]; n != 1 {
			t.Errorf("%s: %d rows for %s, want 1", configurationTable, n, v.Env)
			continue
		}
		def := v.Default
		if d, ok := domainDefaults[v.Env]; ok && def == "" {
			def = d
		}
		if got := defaults[v.Env]; !tableDefaultMatches(got, def) {
			t.Errorf("%s: %s: default column %q, the default in force is %q", configurationTable, v.Env, got, def)
		}
	}
	known := configVars(t)
	// Read outside internal/config: by wagate send and by internal/failpoint.
	known[config.Prefix+"SEND_URL"], known[config.Prefix+"FAILPOINTS"] = "", ""
	for name := range rows {
		if _, ok := known[name]; !ok {
			t.Errorf("%s: %s is not a configuration variable", configurationTable, name)
		}
	}
	readme, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "](deployments/"+configurationTable+")") {
		t.Errorf("README.md does not link %s", configurationTable)
	}
}

// tableDefaultMatches reports whether a default column of the configuration
// table shows def: "`def`" for a default, "—" (with an optional note, such as
// "— (AWS)") for none.
func tableDefaultMatches(column, def string) bool {
	if def == "" {
		return column == "—" || strings.HasPrefix(column, "— (")
	}
	return column == "`"+def+"`"
}

func TestTableDefaultMatches(t *testing.T) {
	for _, c := range []struct {
		column, def string
		want        bool
	}{
		{"`:8080`", ":8080", true},
		{"`:8081`", ":8080", false},
		{":8080", ":8080", false},
		{"—", "", true},
		{"— (required by `worker`)", "", true},
		{"—", "json", false},
		{"`json`", "", false},
	} {
		if got := tableDefaultMatches(c.column, c.def); got != c.want {
			t.Errorf("tableDefaultMatches(%q, %q) = %v, want %v", c.column, c.def, got, c.want)
		}
	}
}
