package deployments

import (
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
)

// pathVars returns the variables whose unit in CONFIGURATION.md is "path":
// files the process opens (CA bundles, client certificates and keys, NATS
// credentials).
func pathVars(t *testing.T) map[string]bool {
	t.Helper()
	table, err := os.ReadFile(configurationTable)
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(WAGATE_[A-Z0-9_]+)` \\| [^|]* \\| path \\|").FindAllSubmatch(table, -1) {
		vars[string(m[1])] = true
	}
	for _, v := range []string{"WAGATE_REDIS_TLS_CA", "WAGATE_NATS_TLS_KEY", "WAGATE_NATS_CREDS"} {
		if !vars[v] {
			t.Fatalf("%s: %s is not a path in the table (found %v)", configurationTable, v, vars)
		}
	}
	return vars
}

// secretFileProblems returns what keeps the process of container c (in a
// pod of spec, started with environ) from reading the files its path
// variables name, and every Secret mounted writable. Each file must be a
// key, listed in items, of a Secret volume mounted read-only, and readable
// by the process's user or groups with the mode and group the kubelet gives
// it (owner root, group fsGroup when set, defaultMode or the item's mode,
// 0644 when neither is set).
func secretFileProblems(spec corev1.PodSpec, c corev1.Container, environ map[string]string, paths map[string]bool) []string {
	var problems []string
	volumes := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		volumes[v.Name] = v
	}
	for _, m := range c.VolumeMounts {
		v, ok := volumes[m.Name]
		if !ok {
			problems = append(problems, fmt.Sprintf("mount %s: no volume %s in the pod", m.MountPath, m.Name))
		} else if v.Secret != nil && !m.ReadOnly {
			problems = append(problems, fmt.Sprintf("Secret %s mounted at %s without readOnly: true", v.Secret.SecretName, m.MountPath))
		}
	}

	// The process's identity: the container's securityContext overrides the pod's.
	var uid, gid int64
	var groups []int64
	var fsGroup *int64
	if psc := spec.SecurityContext; psc != nil {
		uid, gid = ptr.Deref(psc.RunAsUser, 0), ptr.Deref(psc.RunAsGroup, 0)
		groups = psc.SupplementalGroups
		fsGroup = psc.FSGroup
	}
	if sc := c.SecurityContext; sc != nil {
		uid, gid = ptr.Deref(sc.RunAsUser, uid), ptr.Deref(sc.RunAsGroup, gid)
	}
	groups = append(groups, gid)
	if fsGroup != nil {
		groups = append(groups, *fsGroup) // the kubelet adds it to the process's groups
	}

	for _, name := range slices.Sorted(maps.Keys(environ)) {
		file := environ[name]
		if !paths[name] || file == "" {
			continue
		}
		where := fmt.Sprintf("%s=%s", name, file)
		var mount *corev1.VolumeMount
		var rel string
		for i, m := range c.VolumeMounts {
			r, err := filepath.Rel(m.MountPath, file)
			if err == nil && r != "." && !strings.HasPrefix(r, "..") && len(m.MountPath) > len(ptr.Deref(mount, corev1.VolumeMount{}).MountPath) {
				mount, rel = &c.VolumeMounts[i], r
			}
		}
		if mount == nil {
			problems = append(problems, where+": no volume is mounted there")
			continue
		}
		v := volumes[mount.Name]
		if v.Secret == nil {
			problems = append(problems, fmt.Sprintf("%s: volume %s is not a Secret", where, mount.Name))
			continue
		}
		if mount.SubPath != "" {
			rel = filepath.Join(mount.SubPath, rel)
		}
		i := slices.IndexFunc(v.Secret.Items, func(k corev1.KeyToPath) bool { return k.Path == rel })
		if i < 0 {
			problems = append(problems, fmt.Sprintf("%s: Secret %s's items %v do not put a key at %s", where, v.Secret.SecretName, v.Secret.Items, rel))
			continue
		}
		mode := ptr.Deref(v.Secret.Items[i].Mode, ptr.Deref(v.Secret.DefaultMode, 0o644))
		owner, group := int64(0), int64(0)
		if fsGroup != nil {
			group = *fsGroup
		}
		readable := mode&0o004 != 0 || (mode&0o040 != 0 && slices.Contains(groups, group)) || (mode&0o400 != 0 && uid == owner)
		if !readable {
			problems = append(problems, fmt.Sprintf("%s: mode %#o, owner %d, group %d: the process (uid %d, groups %v) cannot read it", where, mode, owner, group, uid, groups))
		}
	}
	return problems
}

// TestKubernetesSecretFiles checks that secretFileProblems finds each way a
// mounted file can be missing or unreadable, on copies of the production
// ingress with one fault each.
func TestKubernetesSecretFiles(t *testing.T) {
	m := build(t, "k8s/overlays/production")
	d := m.deployments["wagate-ingress"]
	cm := m.configMaps[d.Spec.Template.Spec.Containers[0].EnvFrom[0].ConfigMapRef.Name]
	paths := pathVars(t)
	if got := secretFileProblems(d.Spec.Template.Spec, d.Spec.Template.Spec.Containers[0], cm.Data, paths); len(got) != 0 {
		t.Fatalf("production ingress: %v", got)
	}
	for _, c := range []struct {
		fault string
		edit  func(*corev1.PodSpec, map[string]string)
		want  string
	}{
		{"writable mount", func(s *corev1.PodSpec, _ map[string]string) { s.Containers[0].VolumeMounts[0].ReadOnly = false }, "without readOnly"},
		{"file not in the Secret", func(_ *corev1.PodSpec, e map[string]string) { e["WAGATE_NATS_TLS_CA"] = "/etc/wagate/tls/ca.pem" }, "do not put a key at ca.pem"},
		{"file outside the mounts", func(_ *corev1.PodSpec, e map[string]string) { e["WAGATE_REDIS_TLS_KEY"] = "/tls/tls.key" }, "no volume is mounted there"},
		{"owner-only mode", func(s *corev1.PodSpec, _ map[string]string) {
			for _, v := range s.Volumes {
				v.Secret.DefaultMode = ptr.To[int32](0o400)
			}
		}, "cannot read it"},
		{"no fsGroup", func(s *corev1.PodSpec, _ map[string]string) { s.SecurityContext.FSGroup = nil }, "cannot read it"},
		{"not a Secret", func(s *corev1.PodSpec, _ map[string]string) {
			s.Volumes[0].VolumeSource = corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}
		}, "is not a Secret"},
		{"no volume", func(s *corev1.PodSpec, _ map[string]string) { s.Volumes = nil }, "no volume wagate-"},
	} {
		spec := *d.Spec.Template.Spec.DeepCopy()
		environ := maps.Clone(cm.Data)
		c.edit(&spec, environ)
		got := secretFileProblems(spec, spec.Containers[0], environ, paths)
		if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, c.want) }) {
			t.Errorf("%s: problems %q, want one with %q", c.fault, got, c.want)
		}
	}
}

// TestKubernetesTLS checks the components that mount the TLS and NATS
// credentials Secrets: the production overlay has them, each path variable
// they set is one wagate reads and points at a file of the Secret
// (checkWorkload), the base has none, and the runbook creates each Secret
// with the keys the pods read.
func TestKubernetesTLS(t *testing.T) {
	_, ingress, worker := checkManifests(t, "k8s/overlays/production")
	runbook, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"WAGATE_NATS_CREDS", "WAGATE_NATS_TLS_CA", "WAGATE_NATS_TLS_CERT", "WAGATE_NATS_TLS_KEY",
		"WAGATE_REDIS_TLS_CA", "WAGATE_REDIS_TLS_CERT", "WAGATE_REDIS_TLS_KEY"}
	for _, w := range []workload{ingress, worker} {
		for _, v := range want {
			if w.environ[v] == "" {
				t.Errorf("production %s: %s not set", w.name, v)
			}
		}
		for _, v := range w.deploy.Spec.Template.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			if !strings.Contains(string(runbook), "create secret generic "+v.Secret.SecretName) {
				t.Errorf("production %s: the runbook does not create Secret %s", w.name, v.Secret.SecretName)
			}
			for _, k := range v.Secret.Items {
				if !strings.Contains(string(runbook), "--from-file="+k.Key) {
					t.Errorf("production %s: the runbook does not put key %s in Secret %s", w.name, k.Key, v.Secret.SecretName)
				}
			}
		}
	}
	_, ingress, worker = checkManifests(t, "k8s/base")
	for _, w := range []workload{ingress, worker} {
		for v := range pathVars(t) {
			if w.environ[v] != "" {
				t.Errorf("base %s: %s=%s: the base mounts no files", w.name, v, w.environ[v])
			}
		}
		if vs := w.deploy.Spec.Template.Spec.Volumes; len(vs) != 0 {
			t.Errorf("base %s: volumes %v: TLS is opt-in (components/)", w.name, vs)
		}
	}
}

// composeMount returns the bind mount of s whose target is file, and
// whether it is one that is read-only and that docker compose refuses to
// start without (create_host_path: false), so that a missing file is not
// replaced by an empty directory.
func composeMount(s types.ServiceConfig, file string) (v types.ServiceVolumeConfig, ok bool) {
	for _, v := range s.Volumes {
		if v.Target == file {
			return v, v.Type == types.VolumeTypeBind && v.ReadOnly && v.Bind != nil && !bool(v.Bind.CreateHostPath)
		}
	}
	return types.ServiceVolumeConfig{}, false
}

// TestComposeTLS checks compose.tls.yaml over compose.yaml: every path
// setting of the ingress and the worker is a wagate variable naming a file
// mounted read-only, the servers' TLS flags name mounted files too, the
// clients trust the CA the servers verify them with, the recipe in the
// file's header writes every file mounted and names the hosts the clients
// dial, and the servers keep their persistence.
func TestComposeTLS(t *testing.T) {
	const override = "compose.tls.yaml"
	p, err := loadComposeFiles(t, []string{"compose.yaml", override}, composeSecrets)
	if err != nil {
		t.Fatalf("compose.yaml + %s: %v", override, err)
	}
	svc := func(name string) types.ServiceConfig {
		s, err := p.GetService(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	raw, err := os.ReadFile(override)
	if err != nil {
		t.Fatal(err)
	}
	written := map[string]bool{} // files the recipe writes, as paths of the project
	for _, m := range regexp.MustCompile(`-(?:key)?out (\S+)`).FindAllStringSubmatch(string(raw), -1) {
		written[filepath.Join(p.WorkingDir, "tls", m[1])] = true
	}
	sans := regexp.MustCompile(`subjectAltName=(\S+)`).FindStringSubmatch(string(raw))
	if sans == nil {
		t.Fatalf("%s: the recipe gives the servers' certificate no subjectAltName", override)
	}
	sources := map[string]string{} // service/path in the container → file on the host
	mounted := func(s types.ServiceConfig, what, file string) {
		t.Helper()
		v, ok := composeMount(s, file)
		switch {
		case !ok:
			t.Errorf("%s: %s=%s is not a read-only bind mount with create_host_path: false (%+v)", s.Name, what, file, v)
		case !written[v.Source]:
			t.Errorf("%s: %s=%s mounts %s, which the recipe in %s does not write (it writes %v)", s.Name, what, file, v.Source, override, written)
		}
		sources[s.Name+"/"+what] = v.Source
	}
	paths := pathVars(t)

	for _, name := range []string{"ingress", "worker"} {
		s := svc(name)
		environ := map[string]string{}
		var names []string
		for k, v := range s.Environment {
			names = append(names, k)
			if v != nil {
				environ[k] = *v
			}
		}
		checkVarNames(t, "compose "+name, names)
		cfg, err := loadConfig(environ)
		if err != nil {
			t.Fatalf("%s: configuration does not load: %v", name, err)
		}
		for _, v := range []string{"WAGATE_NATS_TLS_CA", "WAGATE_NATS_TLS_CERT", "WAGATE_NATS_TLS_KEY", "WAGATE_REDIS_TLS_CA", "WAGATE_REDIS_TLS_CERT", "WAGATE_REDIS_TLS_KEY"} {
			if environ[v] == "" {
				t.Errorf("%s: %s not set", name, v)
			}
		}
		for _, k := range slices.Sorted(maps.Keys(environ)) {
			if paths[k] && environ[k] != "" {
				mounted(s, k, environ[k])
			}
		}
		if !strings.HasPrefix(cfg.RedisURL, "rediss://") {
			t.Errorf("%s: WAGATE_REDIS_URL %s: TLS needs rediss://", name, cfg.RedisURL)
		}
		for _, u := range []string{cfg.NATSURL, cfg.RedisURL} {
			if host := hostOf(t, u); !slices.Contains(strings.Split(sans[1], ","), "DNS:"+host) {
				t.Errorf("%s: dials %s, not a name of the servers' certificate (%s)", name, host, sans[1])
			}
		}
	}

	nats := svc("nats")
	for _, flag := range []string{"--tlscert", "--tlskey", "--tlscacert"} {
		mounted(nats, flag, flagValue(nats.Command, flag))
	}
	if !slices.Contains(nats.Command, "--tlsverify") || flagValue(nats.Command, "-m") != "8222" || !slices.Contains(nats.Command, "-js") {
		t.Errorf("nats command %v: want -js, -m 8222 (plain, for the health check) and --tlsverify", nats.Command)
	}
	checkVolume(t, p, nats, flagValue(nats.Command, "-sd"))

	redis := svc("redis")
	for _, flag := range []string{"--tls-cert-file", "--tls-key-file", "--tls-ca-cert-file"} {
		mounted(redis, flag, flagValue(redis.Command, flag))
	}
	if flagValue(redis.Command, "--port") != "0" || flagValue(redis.Command, "--tls-port") != "6379" {
		t.Errorf("redis command %v: want --port 0 --tls-port 6379 (TLS only, where the clients dial)", redis.Command)
	}
	if flagValue(redis.Command, "--appendonly") != "yes" || flagValue(redis.Command, "--appendfsync") != "everysec" {
		t.Errorf("redis command %v: want --appendonly yes --appendfsync everysec", redis.Command)
	}
	checkVolume(t, p, redis, "/data")
	if hc := redis.HealthCheck; hc == nil || !slices.Contains(hc.Test, "--tls") {
		t.Errorf("redis: health check %v does not speak TLS", hc)
	} else {
		for _, flag := range []string{"--cacert", "--cert", "--key"} {
			mounted(redis, "healthcheck "+flag, flagValue(hc.Test, flag))
		}
	}

	// The clients trust the CA the servers verify them with.
	for _, c := range []struct{ client, server string }{
		{"ingress/WAGATE_NATS_TLS_CA", "nats/--tlscacert"}, {"worker/WAGATE_NATS_TLS_CA", "nats/--tlscacert"},
		{"ingress/WAGATE_REDIS_TLS_CA", "redis/--tls-ca-cert-file"}, {"worker/WAGATE_REDIS_TLS_CA", "redis/--tls-ca-cert-file"},
	} {
		if sources[c.client] == "" || sources[c.client] != sources[c.server] {
			t.Errorf("%s is %s, %s is %s: want one CA", c.client, sources[c.client], c.server, sources[c.server])
		}
	}
}

// hostOf returns the host of the first server in a NATS or Redis URL.
func hostOf(t *testing.T, rawURL string) string {
	t.Helper()
	u, err := url.Parse(strings.Split(rawURL, ",")[0])
	if err != nil {
		t.Fatalf("%s: %v", rawURL, err)
	}
	return u.Hostname()
}
