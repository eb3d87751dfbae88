package deployments

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

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
