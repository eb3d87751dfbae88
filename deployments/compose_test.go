package deployments

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"sigs.k8s.io/yaml"
)

// loadCompose loads compose.yaml with the Compose specification's loader:
// schema validation, interpolation, normalisation, as `docker compose` does.
func loadCompose(t *testing.T, environ map[string]string, profiles ...string) (*types.Project, error) {
	t.Helper()
	return loadComposeFiles(t, []string{"compose.yaml"}, environ, profiles...)
}

// loadComposeFiles loads files as `docker compose -f file -f file …` does,
// each later file overriding the earlier ones.
func loadComposeFiles(t *testing.T, files []string, environ map[string]string, profiles ...string) (*types.Project, error) {
	t.Helper()
	dir, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	var configFiles []types.ConfigFile
	for _, f := range files {
		configFiles = append(configFiles, types.ConfigFile{Filename: filepath.Join(dir, f)})
	}
	return loader.LoadWithContext(context.Background(), types.ConfigDetails{
		WorkingDir:  dir,
		ConfigFiles: configFiles,
		Environment: environ,
	}, func(o *loader.Options) {
		o.Profiles = profiles
		o.ResolvePaths = true
	})
}

var composeSecrets = map[string]string{"WAGATE_META_APP_SECRET": "app-secret", "WAGATE_META_VERIFY_TOKEN": "verify-token"}

func TestCompose(t *testing.T) {
	if _, err := loadCompose(t, map[string]string{"WAGATE_META_VERIFY_TOKEN": "v"}); err == nil || !strings.Contains(err.Error(), "WAGATE_META_APP_SECRET") {
		t.Errorf("without WAGATE_META_APP_SECRET: got %v, want an error naming it", err)
	}
	p, err := loadCompose(t, composeSecrets)
	if err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if got := slices.Sorted(slices.Values(p.ServiceNames())); !slices.Equal(got, []string{"ingress", "nats", "redis", "worker"}) {
		t.Fatalf("services without a profile: %v", got)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	// NATS: JetStream with its store on a named volume, monitoring for probes and the exporter.
	nats := svc("nats")
	if !strings.HasPrefix(nats.Image, "nats:2.11") {
		t.Errorf("nats image %s, want nats:2.11", nats.Image)
	}
	storeDir := flagValue(nats.Command, "-sd")
	if !slices.Contains(nats.Command, "-js") || storeDir == "" || flagValue(nats.Command, "-m") != "8222" {
		t.Errorf("nats command %v: want -js, -sd <dir> and -m 8222", nats.Command)
	}
	checkVolume(t, p, nats, storeDir)

	// Redis: AOF, fsync every second, on a named volume.
	redis := svc("redis")
	if flagValue(redis.Command, "--appendonly") != "yes" || flagValue(redis.Command, "--appendfsync") != "everysec" {
		t.Errorf("redis command %v: want --appendonly yes --appendfsync everysec", redis.Command)
	}
	checkVolume(t, p, redis, "/data")
	for _, s := range []types.ServiceConfig{nats, redis} {
		if s.HealthCheck == nil || len(s.HealthCheck.Test) == 0 || s.HealthCheck.Disable {
			t.Errorf("%s: no health check", s.Name)
		}
	}

	// wagate: the image from deployments/Dockerfile, valid configuration, ports, shutdown.
	for _, c := range []struct {
		name     string
		replicas int
	}{{"ingress", 1}, {"worker", 3}} {
		s := svc(c.name)
		if s.Build == nil {
			t.Errorf("%s: no build", c.name)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: Dockerfile: %v", c.name, err)
		} else if _, err := os.Stat(filepath.Join(s.Build.Context, "go.mod")); err != nil {
			t.Errorf("%s: build context %s is not the module root: %v", c.name, s.Build.Context, err)
		}
		if len(s.Command) == 0 || s.Command[0] != "/usr/local/bin/"+c.name {
			t.Errorf("%s: command %v", c.name, s.Command)
		}
		if got := s.GetScale(); got != c.replicas {
			t.Errorf("%s: %d replicas, want %d", c.name, got, c.replicas)
		}
		environ := map[string]string{}
		var names []string
		for k, v := range s.Environment {
			names = append(names, k)
			if v != nil {
				environ[k] = *v
			}
		}
		checkVarNames(t, "compose "+c.name, names)
		cfg, err := loadConfig(environ)
		if err != nil {
			t.Errorf("%s: configuration does not load: %v", c.name, err)
			continue
		}
		for _, dep := range []string{"nats", "redis"} {
			if d, ok := s.DependsOn[dep]; !ok || d.Condition != types.ServiceConditionHealthy {
				t.Errorf("%s: must wait for %s to be healthy", c.name, dep)
			}
		}
		if c.name == "worker" {
			if err := cfg.CheckWorker(); err != nil {
				t.Errorf("worker: bin/worker would refuse to start: %v", err)
			}
		}
		if !strings.Contains(cfg.NATSURL, "//nats:4222") || !strings.Contains(cfg.RedisURL, "//redis:6379") {
			t.Errorf("%s: NATS %s and Redis %s: want the compose services", c.name, cfg.NATSURL, cfg.RedisURL)
		}
		if s.StopGracePeriod == nil || time.Duration(*s.StopGracePeriod) <= cfg.ShutdownTimeout {
			t.Errorf("%s: stop_grace_period %v, want above WAGATE_SHUTDOWN_TIMEOUT %s", c.name, s.StopGracePeriod, cfg.ShutdownTimeout)
		}
		addr := cfg.HTTPAddr
		if c.name == "worker" {
			addr = cfg.WorkerHTTPAddr
			for _, port := range s.Ports {
				if port.Published != "" {
					t.Errorf("worker publishes host port %s: three replicas cannot share it", port.Published)
				}
			}
		} else {
			if !slices.ContainsFunc(s.Ports, func(pc types.ServicePortConfig) bool { return int(pc.Target) == addrPort(t, addr) }) {
				t.Errorf("ingress: no port for %s in %v", addr, s.Ports)
			}
			// The admin port (probes, metrics) is published on loopback only.
			for _, pc := range s.Ports {
				if int(pc.Target) == addrPort(t, cfg.AdminAddr) && pc.Published != "" && pc.HostIP != "127.0.0.1" {
					t.Errorf("ingress: admin port %d published on %q, want 127.0.0.1 only", pc.Target, pc.HostIP)
				}
			}
		}
	}
	if _, ok := svc("ingress").Environment["WAGATE_META_APP_SECRET"]; !ok {
		t.Error("ingress: WAGATE_META_APP_SECRET not passed")
	}
}

// TestComposeMonitoring checks the monitoring profile and its Prometheus
// configuration: every scrape target is a compose service on the port it
// listens on, and the rule file is the one mounted.
func TestComposeMonitoring(t *testing.T) {
	p, err := loadCompose(t, composeSecrets, "monitoring")
	if err != nil {
		t.Fatalf("compose.yaml --profile monitoring: %v", err)
	}
	mounts := map[string]string{} // container path → host path
	for _, name := range []string{"prometheus", "grafana"} {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, v := range s.Volumes {
			if _, err := os.Stat(v.Source); err != nil {
				t.Errorf("%s: mounts %s: %v", name, v.Source, err)
			}
			mounts[v.Target] = v.Source
		}
	}
	exporter, err := p.GetService("nats-exporter")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(exporter.Command, "-jsz=all") || !slices.Contains(exporter.Command, "http://nats:8222") {
		t.Errorf("nats-exporter command %v: want -jsz=all http://nats:8222", exporter.Command)
	}

	var prom struct {
		Global struct {
			ScrapeInterval     string `json:"scrape_interval"`
			EvaluationInterval string `json:"evaluation_interval"`
		} `json:"global"`
		RuleFiles     []string `json:"rule_files"`
		ScrapeConfigs []struct {
			JobName       string `json:"job_name"`
			StaticConfigs []struct {
				Targets []string `json:"targets"`
			} `json:"static_configs,omitempty"`
			DNSSDConfigs []struct {
				Names []string `json:"names"`
				Type  string   `json:"type"`
				Port  int      `json:"port"`
			} `json:"dns_sd_configs,omitempty"`
		} `json:"scrape_configs"`
	}
	raw, err := os.ReadFile(mounts["/etc/prometheus/prometheus.yml"])
	if err != nil {
		t.Fatalf("prometheus.yml is not mounted where Prometheus reads it: %v", err)
	}
	if err := yaml.UnmarshalStrict(raw, &prom); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	for _, f := range prom.RuleFiles {
		if filepath.Base(mounts[f]) != "alerts.yaml" {
			t.Errorf("rule file %s is not the mounted alerts.yaml", f)
		}
	}
	if len(prom.RuleFiles) == 0 {
		t.Error("prometheus.yml loads no rule file")
	}
	environ := map[string]string{}
	for _, name := range []string{"ingress", "worker"} {
		s, _ := p.GetService(name)
		for k, v := range s.Environment {
			if v != nil {
				environ[name+"/"+k] = *v
			}
		}
	}
	wantPort := map[string]string{
		"ingress":       strconv.Itoa(addrPort(t, environ["ingress/WAGATE_ADMIN_ADDR"])),
		"worker":        strconv.Itoa(addrPort(t, environ["worker/WAGATE_WORKER_HTTP_ADDR"])),
		"nats-exporter": "7777", // prometheus-nats-exporter's default -port
	}
	seen := map[string]bool{}
	for _, sc := range prom.ScrapeConfigs {
		var targets []string
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
		for _, d := range sc.DNSSDConfigs {
			for _, n := range d.Names {
				targets = append(targets, net.JoinHostPort(n, strconv.Itoa(d.Port)))
			}
		}
		for _, tg := range targets {
			host, port, err := net.SplitHostPort(tg)
			if err != nil || wantPort[host] != port {
				t.Errorf("job %s: target %s: want one of %v", sc.JobName, tg, wantPort)
			}
			seen[host] = true
		}
	}
	for host := range wantPort {
		if !seen[host] {
			t.Errorf("prometheus.yml does not scrape %s", host)
		}
	}
}

// flagValue returns the argument after flag in args, or "".
func flagValue(args []string, flag string) string {
	i := slices.Index(args, flag)
	if i < 0 || i+1 >= len(args) {
		return ""
	}
	return args[i+1]
}

// checkVolume checks that s keeps dir on a named volume of the project.
func checkVolume(t *testing.T, p *types.Project, s types.ServiceConfig, dir string) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Target == dir && v.Type == types.VolumeTypeVolume {
			if _, ok := p.Volumes[v.Source]; ok {
				return
			}
		}
	}
	t.Errorf("%s: %s is not on a named volume: its data would not survive the container", s.Name, dir)
}
