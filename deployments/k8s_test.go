package deployments

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/api/krusty"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/messages/streams"
)

// scaledObject is KEDA's keda.sh/v1alpha1 ScaledObject, field for field as
// the ScaledObject specification documents it
// (https://keda.sh/docs/latest/reference/scaledobject-spec/), so that a strict
// decode rejects a field KEDA does not have. (KEDA's own Go types would bring
// in its whole controller.)
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion             string `json:"apiVersion,omitempty"`
			Kind                   string `json:"kind,omitempty"`
			Name                   string `json:"name"`
			EnvSourceContainerName string `json:"envSourceContainerName,omitempty"`
		} `json:"scaleTargetRef"`
		PollingInterval       *int32 `json:"pollingInterval,omitempty"`
		CooldownPeriod        *int32 `json:"cooldownPeriod,omitempty"`
		InitialCooldownPeriod *int32 `json:"initialCooldownPeriod,omitempty"`
		IdleReplicaCount      *int32 `json:"idleReplicaCount,omitempty"`
		MinReplicaCount       *int32 `json:"minReplicaCount,omitempty"`
		MaxReplicaCount       *int32 `json:"maxReplicaCount,omitempty"`
		Fallback              *struct {
			FailureThreshold int32  `json:"failureThreshold"`
			Replicas         int32  `json:"replicas"`
			Behavior         string `json:"behavior,omitempty"`
		} `json:"fallback,omitempty"`
		Advanced *struct {
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount,omitempty"`
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name,omitempty"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior,omitempty"`
			} `json:"horizontalPodAutoscalerConfig,omitempty"`
			ScalingModifiers *struct {
				Formula          string `json:"formula,omitempty"`
				Target           string `json:"target,omitempty"`
				ActivationTarget string `json:"activationTarget,omitempty"`
				MetricType       string `json:"metricType,omitempty"`
			} `json:"scalingModifiers,omitempty"`
		} `json:"advanced,omitempty"`
		Triggers []struct {
			Type              string            `json:"type"`
			Name              string            `json:"name,omitempty"`
			Metadata          map[string]string `json:"metadata"`
			MetricType        string            `json:"metricType,omitempty"`
			UseCachedMetrics  bool              `json:"useCachedMetrics,omitempty"`
			AuthenticationRef *struct {
				Name string `json:"name"`
				Kind string `json:"kind,omitempty"`
			} `json:"authenticationRef,omitempty"`
		} `json:"triggers"`
	} `json:"spec"`
}

// natsJetStreamMetadata are the nats-jetstream trigger's parameters and
// whether each is required (https://keda.sh/docs/latest/scalers/nats-jetstream/).
var natsJetStreamMetadata = map[string]bool{
	"natsServerMonitoringEndpoint": true,
	"account":                      true,
	"stream":                       true,
	"consumer":                     true,
	"lagThreshold":                 true,
	"activationLagThreshold":       false,
	"useHttps":                     false,
}

// manifests are the objects of one kustomize build, each decoded strictly
// into its API type.
type manifests struct {
	namespaces    []corev1.Namespace
	configMaps    map[string]corev1.ConfigMap
	deployments   map[string]appsv1.Deployment
	services      []corev1.Service
	hpas          []autoscalingv2.HorizontalPodAutoscaler
	pdbs          []policyv1.PodDisruptionBudget
	scaledObjects []scaledObject
}

// decodeStrict decodes a manifest into v, rejecting unknown and duplicate
// fields and values of the wrong type.
func decodeStrict(raw []byte, v any) error { return yaml.UnmarshalStrict(raw, v) }

// build runs kustomize on dir and decodes every object it yields.
func build(t *testing.T, dir string) manifests {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := manifests{configMaps: map[string]corev1.ConfigMap{}, deployments: map[string]appsv1.Deployment{}}
	for _, r := range resources.Resources() {
		raw, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetApiVersion() + " " + r.GetKind()
		where := fmt.Sprintf("%s: %s %s", dir, gvk, r.GetName())
		var meta metav1.ObjectMeta
		switch gvk {
		case "v1 Namespace":
			var o corev1.Namespace
			err, meta = decodeStrict(raw, &o), o.ObjectMeta
			m.namespaces = append(m.namespaces, o)
		case "v1 ConfigMap":
			var o corev1.ConfigMap
			err, meta = decodeStrict(raw, &o), o.ObjectMeta
			m.configMaps[o.Name] = o
		case "apps/v1 Deployment":
			var o appsv1.Deployment
			err, meta = decodeStrict(raw, &o), o.ObjectMeta
			m.deployments[o.Name] = o
		case "v1 Service":
			var o corev1.Service
			err, meta = decodeStrict(raw, &o), o.ObjectMeta
			m.services = append(m.services, o)
		case "autoscaling/v2 HorizontalPodAutoscaler":
			var o autoscalingv2.HorizontalPodAutoscaler
			err, meta = decodeStrict(raw, &o), o.ObjectMeta
			m.hpas = append(m.hpas, o)
		case "policy/v1 PodDisruptionBudget":
			var o policyv1.PodDisruptionBudget
			err, meta = decodeStrict(raw, &o), o.ObjectMeta
			m.pdbs = append(m.pdbs, o)
		case "keda.sh/v1alpha1 ScaledObject":
			var o scaledObject
			err, meta = decodeStrict(raw, &o), o.ObjectMeta
			m.scaledObjects = append(m.scaledObjects, o)
		default:
			t.Errorf("%s: no schema for this kind here (a Secret belongs to the operator, not the manifests)", where)
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", where, err)
			continue
		}
		checkMeta(t, where, gvk, meta)
	}
	return m
}

// checkMeta checks names, namespace and labels as the API server would.
func checkMeta(t *testing.T, where, gvk string, meta metav1.ObjectMeta) {
	t.Helper()
	for _, msg := range validation.IsDNS1123Subdomain(meta.Name) {
		t.Errorf("%s: name: %s", where, msg)
	}
	if gvk != "v1 Namespace" && meta.Namespace != "wagate" {
		t.Errorf("%s: namespace %q, want wagate", where, meta.Namespace)
	}
	for k, v := range meta.Labels {
		for _, msg := range append(validation.IsQualifiedName(k), validation.IsValidLabelValue(v)...) {
			t.Errorf("%s: label %s=%s: %s", where, k, v, msg)
		}
	}
}

// secretName matches the variables that hold secrets.
var secretName = regexp.MustCompile(`SECRET|TOKEN|HMAC_KEY|PASSWORD`)

// workload is one Deployment with what it runs with.
type workload struct {
	name, binary string
	deploy       appsv1.Deployment
	container    corev1.Container
	environ      map[string]string // the environment the process starts with
	cfg          config.Config
}

// secretExample returns the keys of secret.example.yaml, decoded strictly.
func secretExample(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("k8s/base/secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var s corev1.Secret
	if err := decodeStrict(raw, &s); err != nil {
		t.Fatalf("secret.example.yaml: %v", err)
	}
	if s.Name != "wagate-secrets" || s.Namespace != "wagate" {
		t.Fatalf("secret.example.yaml: %s/%s, want wagate/wagate-secrets", s.Namespace, s.Name)
	}
	return s.StringData
}

// checkWorkload checks one Deployment and returns it with the configuration
// its container starts with.
func checkWorkload(t *testing.T, m manifests, name, binary string) workload {
	t.Helper()
	d, ok := m.deployments[name]
	if !ok {
		t.Fatalf("no Deployment %s", name)
	}
	w := workload{name: name, binary: binary, deploy: d}
	spec := d.Spec.Template.Spec

	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %v does not select its own pods %v (%v)", name, d.Spec.Selector, d.Spec.Template.Labels, err)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("%s: replicas is set; the autoscaler owns the count (kubectl apply would reset it)", name)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", name, len(spec.Containers))
	}
	c := spec.Containers[0]
	w.container = c
	if !strings.Contains(c.Image, "/") || !strings.Contains(c.Image, ":") {
		t.Errorf("%s: image %q: want registry/name:tag (kustomize images:)", name, c.Image)
	}
	if len(c.Command) == 0 || c.Command[0] != "/usr/local/bin/"+binary {
		t.Errorf("%s: command %v, want /usr/local/bin/%s", name, c.Command, binary)
	}
	if _, err := os.Stat(filepath.Join("..", "cmd", binary)); err != nil {
		t.Errorf("%s: runs %s, which is not a command of the module: %v", name, binary, err)
	}

	// Security: non-root, read-only root, no privilege.
	psc, sc := spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("%s: pod securityContext must set runAsNonRoot and a non-zero runAsUser", name)
	}
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Errorf("%s: container securityContext must set readOnlyRootFilesystem, allowPrivilegeEscalation: false and drop ALL capabilities", name)
	}

	// Resources: requests for scheduling (and the HPA), a memory limit.
	req, lim := c.Resources.Requests, c.Resources.Limits
	if req.Cpu().IsZero() || req.Memory().IsZero() || lim.Memory().IsZero() {
		t.Errorf("%s: resources need cpu and memory requests and a memory limit: %v", name, c.Resources)
	} else if req.Memory().Cmp(*lim.Memory()) > 0 {
		t.Errorf("%s: memory request %s above its limit %s", name, req.Memory(), lim.Memory())
	}

	// Environment: what the process sees, built as the kubelet does.
	environ := map[string]string{}
	var names []string
	secrets := secretExample(t)
	for _, ef := range c.EnvFrom {
		if ef.ConfigMapRef == nil {
			t.Errorf("%s: envFrom %v: only the ConfigMap", name, ef)
			continue
		}
		cm, ok := m.configMaps[ef.ConfigMapRef.Name]
		if !ok {
			t.Errorf("%s: envFrom ConfigMap %q is not in the build", name, ef.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			environ[ef.Prefix+k] = v
			names = append(names, ef.Prefix+k)
			if secretName.MatchString(k) {
				t.Errorf("%s: %s is in the ConfigMap: it belongs in the Secret", name, k)
			}
		}
	}
	for _, e := range c.Env {
		names = append(names, e.Name)
		switch {
		case e.ValueFrom == nil:
			environ[e.Name] = e.Value
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secrets[ref.Key]
			if ref.Name != "wagate-secrets" || !ok {
				t.Errorf("%s: %s from Secret %s key %s: not in secret.example.yaml", name, e.Name, ref.Name, ref.Key)
			}
			// An optional key the operator leaves out keeps the ConfigMap's value.
			if ref.Optional == nil || !*ref.Optional {
				environ[e.Name] = v
			}
		case e.ValueFrom.ResourceFieldRef != nil:
			if e.ValueFrom.ResourceFieldRef.Resource == "limits.memory" && lim.Memory().IsZero() {
				t.Errorf("%s: %s reads limits.memory, which is not set", name, e.Name)
			}
		default:
			t.Errorf("%s: %s: unexpected valueFrom %v", name, e.Name, e.ValueFrom)
		}
	}
	checkVarNames(t, name, names)
	w.environ = environ
	w.cfg, err = loadConfig(environ)
	if err != nil {
		t.Fatalf("%s: its configuration does not load: %v", name, err)
	}
	for _, p := range secretFileProblems(spec, c, environ, pathVars(t)) {
		t.Errorf("%s: %s", name, p)
	}
	// connect.RedisClient refuses TLS files with a plain redis:// URL.
	if tlsFiles := w.cfg.RedisTLSCA + w.cfg.RedisTLSCert + w.cfg.RedisTLSKey; tlsFiles != "" && !strings.HasPrefix(w.cfg.RedisURL, "rediss://") {
		t.Errorf("%s: WAGATE_REDIS_TLS_* set but WAGATE_REDIS_URL is %s: wagate needs rediss:// for TLS", name, w.cfg.RedisURL)
	}
	if binary == "worker" {
		if err := w.cfg.CheckWorker(); err != nil {
			t.Errorf("%s: bin/worker would refuse to start: %v", name, err)
		}
	}

	// Ports and probes: the ingress serves its probes and metrics on the
	// admin address, and its webhooks on another port; the worker has one.
	addr := w.cfg.AdminAddr
	if binary == "worker" {
		addr = w.cfg.WorkerHTTPAddr
	} else if addrPort(t, w.cfg.HTTPAddr) == addrPort(t, addr) {
		t.Errorf("%s: webhook address %s and admin address %s share a port", name, w.cfg.HTTPAddr, addr)
	} else if !slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool { return int(p.ContainerPort) == addrPort(t, w.cfg.HTTPAddr) }) {
		t.Errorf("%s: no container port for the webhook address %s", name, w.cfg.HTTPAddr)
	}
	port := addrPort(t, addr)
	var portName string
	for _, p := range c.Ports {
		if int(p.ContainerPort) == port {
			portName = p.Name
		}
		for _, msg := range validation.IsValidPortName(p.Name) {
			t.Errorf("%s: port name %q: %s", name, p.Name, msg)
		}
	}
	if portName == "" {
		t.Errorf("%s: no container port %d (the process listens on %q)", name, port, addr)
	}
	if got := d.Spec.Template.Annotations["prometheus.io/port"]; got != strconv.Itoa(port) {
		t.Errorf("%s: prometheus.io/port %q, want %d", name, got, port)
	}
	for _, p := range []struct {
		kind  string
		probe *corev1.Probe
		path  string
	}{{"liveness", c.LivenessProbe, "/healthz"}, {"readiness", c.ReadinessProbe, "/readyz"}, {"startup", c.StartupProbe, "/healthz"}} {
		if p.kind == "startup" && p.probe == nil {
			continue
		}
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", name, p.kind)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path || !(g.Port.StrVal == portName || int(g.Port.IntVal) == port) {
			t.Errorf("%s: %s probe %s on %s, want %s on %d", name, p.kind, g.Path, g.Port.String(), p.path, port)
		}
	}

	// Shutdown: the kubelet must not kill the process before it has drained.
	var preStop time.Duration
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.Sleep != nil {
		preStop = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	}
	const margin = 5 * time.Second // the worker's HTTP server shutdown, process exit
	need := preStop + w.cfg.ShutdownTimeout + margin
	if spec.TerminationGracePeriodSeconds == nil || time.Duration(*spec.TerminationGracePeriodSeconds)*time.Second < need {
		t.Errorf("%s: terminationGracePeriodSeconds %s, want at least %s (preStop %s + WAGATE_SHUTDOWN_TIMEOUT %s + %s)",
			name, deref(spec.TerminationGracePeriodSeconds), need, preStop, w.cfg.ShutdownTimeout, margin)
	}
	return w
}

// checkManifests checks one build as a whole and returns its workloads.
func checkManifests(t *testing.T, dir string) (m manifests, ingress, worker workload) {
	t.Helper()
	m = build(t, dir)
	if len(m.namespaces) != 1 || len(m.configMaps) != 1 || len(m.deployments) != 2 || len(m.services) != 1 ||
		len(m.hpas) != 1 || len(m.pdbs) != 2 || len(m.scaledObjects) != 1 {
		t.Fatalf("%s: unexpected set of objects: %d Namespace, %d ConfigMap, %d Deployment, %d Service, %d HPA, %d PDB, %d ScaledObject",
			dir, len(m.namespaces), len(m.configMaps), len(m.deployments), len(m.services), len(m.hpas), len(m.pdbs), len(m.scaledObjects))
	}
	ingress = checkWorkload(t, m, "wagate-ingress", "ingress")
	worker = checkWorkload(t, m, "wagate-worker", "worker")
	if !slices.ContainsFunc(ingress.container.Env, func(e corev1.EnvVar) bool {
		return e.Name == "WAGATE_META_APP_SECRET" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
	}) {
		t.Errorf("%s: the ingress must read WAGATE_META_APP_SECRET from the Secret", dir)
	}
	selects := func(sel *metav1.LabelSelector, w workload) bool {
		s, err := metav1.LabelSelectorAsSelector(sel)
		return err == nil && !s.Empty() && s.Matches(labels.Set(w.deploy.Spec.Template.Labels))
	}

	// Service → ingress pods, on the container's port.
	svc := m.services[0]
	sel := &metav1.LabelSelector{MatchLabels: svc.Spec.Selector}
	if !selects(sel, ingress) || selects(sel, worker) {
		t.Errorf("%s: Service %s selector %v must select the ingress pods only", dir, svc.Name, svc.Spec.Selector)
	}
	for _, p := range svc.Spec.Ports {
		i := slices.IndexFunc(ingress.container.Ports, func(cp corev1.ContainerPort) bool {
			return cp.Name == p.TargetPort.StrVal || cp.ContainerPort == p.TargetPort.IntVal
		})
		if i < 0 {
			t.Errorf("%s: Service port %s targets %s, which the ingress container does not have", dir, p.Name, p.TargetPort.String())
		} else if int(ingress.container.Ports[i].ContainerPort) != addrPort(t, ingress.cfg.HTTPAddr) {
			// The Service faces the providers: webhooks only, never the admin port.
			t.Errorf("%s: Service port %s targets container port %d, not the webhook address %s", dir, p.Name, ingress.container.Ports[i].ContainerPort, ingress.cfg.HTTPAddr)
		}
	}

	// HPA → ingress Deployment, on CPU.
	hpa := m.hpas[0]
	if ref := hpa.Spec.ScaleTargetRef; ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != ingress.name {
		t.Errorf("%s: HPA targets %+v, want the ingress Deployment", dir, ref)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
		t.Errorf("%s: HPA replicas %s..%d: want at least 2 and max ≥ min", dir, deref(hpa.Spec.MinReplicas), hpa.Spec.MaxReplicas)
	}
	if !slices.ContainsFunc(hpa.Spec.Metrics, func(ms autoscalingv2.MetricSpec) bool {
		return ms.Type == autoscalingv2.ResourceMetricSourceType && ms.Resource != nil && ms.Resource.Name == corev1.ResourceCPU &&
			ms.Resource.Target.Type == autoscalingv2.UtilizationMetricType && ms.Resource.Target.AverageUtilization != nil
	}) {
		t.Errorf("%s: HPA does not scale on CPU utilisation", dir)
	}

	// PDBs: one per Deployment, and drains can always proceed.
	for _, w := range []workload{ingress, worker} {
		var found []string
		for _, p := range m.pdbs {
			if selects(p.Spec.Selector, w) {
				found = append(found, p.Name)
				if p.Spec.MinAvailable != nil || p.Spec.MaxUnavailable == nil || p.Spec.MaxUnavailable.IntValue() < 1 {
					t.Errorf("%s: PDB %s: use maxUnavailable ≥ 1, so that a drain never blocks whatever the replica count", dir, p.Name)
				}
			}
		}
		if len(found) != 1 {
			t.Errorf("%s: %s is covered by PDBs %v, want exactly one", dir, w.name, found)
		}
	}

	// ScaledObject → worker Deployment, one trigger per consumer the workers
	// read: their consumer, or with WAGATE_ORDER=conversation each partition
	// consumer (components/order).
	so := m.scaledObjects[0]
	if ref := so.Spec.ScaleTargetRef; ref.Name != worker.name || (ref.Kind != "" && ref.Kind != "Deployment") {
		t.Errorf("%s: ScaledObject targets %+v, want the worker Deployment", dir, ref)
	}
	consumers := workerConsumers(worker.cfg)
	lo, hi := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount
	switch {
	case lo == nil || hi == nil || *lo < 1 || *hi < *lo:
		t.Errorf("%s: ScaledObject replicas %s..%s: want 1 ≤ min ≤ max", dir, deref(lo), deref(hi))
	case worker.cfg.Order == "conversation":
		if int(*hi) > streams.Partitions {
			t.Errorf("%s: maxReplicaCount %d above the %d partitions: a worker beyond them owns none and idles",
				dir, *hi, streams.Partitions)
		}
	default:
		// A worker holds its running handlers' messages and those it
		// fetched ahead.
		if n := int(*hi) * (worker.cfg.WorkerConcurrency + worker.cfg.WorkerPrefetch); n > worker.cfg.MaxAckPending {
			t.Errorf("%s: maxReplicaCount %d × (WAGATE_WORKER_CONCURRENCY %d + WAGATE_WORKER_PREFETCH %d) = %d messages held, above WAGATE_MAX_ACK_PENDING %d: the extra replicas would idle",
				dir, *hi, worker.cfg.WorkerConcurrency, worker.cfg.WorkerPrefetch, n, worker.cfg.MaxAckPending)
		}
	}
	if len(so.Spec.Triggers) == 0 {
		t.Fatalf("%s: ScaledObject has no triggers", dir)
	}
	var watched []string
	for i, tr := range so.Spec.Triggers {
		where := fmt.Sprintf("%s: trigger %d", dir, i)
		if tr.Type != "nats-jetstream" {
			t.Errorf("%s: type %q, want nats-jetstream", where, tr.Type)
			continue
		}
		md := tr.Metadata
		watched = append(watched, md["consumer"])
		for k, required := range natsJetStreamMetadata {
			if _, ok := md[k]; required && !ok {
				t.Errorf("%s lacks %s", where, k)
			}
		}
		for k := range md {
			if _, ok := natsJetStreamMetadata[k]; !ok {
				t.Errorf("%s: unknown parameter %s", where, k)
			}
		}
		if md["stream"] != worker.cfg.EventsStream {
			t.Errorf("%s watches stream %s, the workers consume %s", where, md["stream"], worker.cfg.EventsStream)
		}
		if n, err := strconv.Atoi(md["lagThreshold"]); err != nil || n <= 0 {
			t.Errorf("%s: lagThreshold %q: want a positive integer", where, md["lagThreshold"])
		}
		if host, port, err := net.SplitHostPort(md["natsServerMonitoringEndpoint"]); err != nil || host == "" || port == "" {
			t.Errorf("%s: natsServerMonitoringEndpoint %q: want host:port (%v)", where, md["natsServerMonitoringEndpoint"], err)
		}
		first := so.Spec.Triggers[0].Metadata
		for _, k := range []string{"natsServerMonitoringEndpoint", "account", "stream"} {
			if md[k] != first[k] {
				t.Errorf("%s: %s %q, trigger 0 has %q: one NATS account and stream for every consumer", where, k, md[k], first[k])
			}
		}
	}
	// A trigger on a consumer that does not exist reads the stream's last
	// sequence as its backlog, and KEDA scales to maxReplicaCount.
	if d := listDiff(watched, consumers); d != "" {
		t.Errorf("%s: ScaledObject triggers vs the consumers the workers read (WAGATE_ORDER=%s, %d of them): %s",
			dir, worker.cfg.Order, len(consumers), d)
	}
	return m, ingress, worker
}

// workerConsumers returns the consumers of the events stream that workers
// configured by cfg read, in partition order: the workers' consumer, or with
// WAGATE_ORDER=conversation its partition consumers (the streams
// configuration as internal/connect.Streams builds it).
func workerConsumers(cfg config.Config) []string {
	sc := streams.Config{Consumer: cfg.Consumer}
	if cfg.Order != "conversation" {
		return []string{sc.WithDefaults().Consumer}
	}
	return sc.WorkerConsumers()[1:]
}

// listDiff describes how got differs from want: the names only one of them
// has, or else the first place where their order differs; "" when they are
// equal.
func listDiff(got, want []string) string {
	var extra, missing []string
	for _, g := range got {
		if !slices.Contains(want, g) {
			extra = append(extra, g)
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			missing = append(missing, w)
		}
	}
	switch {
	case extra != nil || missing != nil:
		return fmt.Sprintf("unexpected %q, missing %q", extra, missing)
	case len(got) != len(want):
		return fmt.Sprintf("%d entries for %d names: one twice", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			return fmt.Sprintf("entry %d is %q, want %q", i, got[i], want[i])
		}
	}
	return ""
}

func TestKubernetesBase(t *testing.T) {
	_, ingress, worker := checkManifests(t, "k8s/base")
	if ingress.cfg.StreamReplicas != 1 || worker.cfg.Handler != "log" {
		t.Errorf("base: stream replicas %d, handler %s: want 1 and log", ingress.cfg.StreamReplicas, worker.cfg.Handler)
	}
}

func TestKubernetesProduction(t *testing.T) {
	m, ingress, worker := checkManifests(t, "k8s/overlays/production")
	for _, w := range []workload{ingress, worker} {
		if w.cfg.StreamReplicas != 3 {
			t.Errorf("production %s: WAGATE_STREAM_REPLICAS %d, want 3", w.name, w.cfg.StreamReplicas)
		}
		if strings.HasSuffix(w.container.Image, ":latest") {
			t.Errorf("production %s: image %s: pin a release", w.name, w.container.Image)
		}
	}
	if worker.cfg.Handler != "forward" {
		t.Errorf("production: handler %s, want forward", worker.cfg.Handler)
	}
	if min := m.hpas[0].Spec.MinReplicas; min == nil || *min < 3 {
		t.Errorf("production: ingress HPA minReplicas %s, want at least 3", deref(min))
	}
	base := build(t, "k8s/base")
	if got, was := ingress.container.Resources.Requests.Cpu(), base.deployments["wagate-ingress"].Spec.Template.Spec.Containers[0].Resources.Requests.Cpu(); got.Cmp(*was) <= 0 {
		t.Errorf("production: ingress cpu request %s, not above the base's %s", got, was)
	}
	if ep := m.scaledObjects[0].Spec.Triggers[0].Metadata["natsServerMonitoringEndpoint"]; !strings.Contains(ep, "headless") {
		t.Errorf("production: natsServerMonitoringEndpoint %q: a cluster needs the headless Service, so KEDA can reach the consumer's leader", ep)
	}
}

// TestKustomizations checks each kustomization.yaml against kustomize's own
// type, and that every file of the tree is used by one (or is the example
// Secret, which must not be).
func TestKustomizations(t *testing.T) {
	used := map[string]bool{}
	// The builds the tests check, the components that only the tests'
	// own overlays include (order_test.go), then the components they include.
	dirs := []string{"k8s/base", "k8s/overlays/production", orderComponent}
	for i := 0; i < len(dirs); i++ {
		dir := dirs[i]
		raw, err := os.ReadFile(filepath.Join(dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var k kusttypes.Kustomization
		if err := decodeStrict(raw, &k); err != nil {
			t.Errorf("%s/kustomization.yaml: %v", dir, err)
			continue
		}
		if want := map[bool]string{false: kusttypes.KustomizationKind, true: kusttypes.ComponentKind}[strings.Contains(dir, "components/")]; k.Kind != want {
			t.Errorf("%s/kustomization.yaml: kind %s, want %s", dir, k.Kind, want)
		}
		for _, c := range k.Components {
			if c := filepath.Clean(filepath.Join(dir, c)); !slices.Contains(dirs, c) {
				dirs = append(dirs, c)
			}
		}
		files := slices.Clone(k.Resources)
		for _, g := range k.ConfigMapGenerator {
			files = append(files, g.EnvSources...)
			files = append(files, g.FileSources...)
		}
		for _, p := range k.Patches {
			if p.Path != "" {
				files = append(files, p.Path)
			}
		}
		used[filepath.Join(dir, "kustomization.yaml")] = true
		for _, f := range files {
			used[filepath.Clean(filepath.Join(dir, f))] = true
		}
	}
	if used["k8s/base/secret.example.yaml"] {
		t.Error("secret.example.yaml is part of a kustomization: the real Secret is the operator's")
	}
	err := filepath.WalkDir("k8s", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !used[path] && path != "k8s/base/secret.example.yaml" {
			t.Errorf("%s is not used by any kustomization", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The example Secret covers every key the Deployments read.
	keys := secretExample(t)
	for _, k := range []string{"WAGATE_META_APP_SECRET", "WAGATE_META_VERIFY_TOKEN"} {
		if keys[k] == "" {
			t.Errorf("secret.example.yaml lacks %s", k)
		}
	}
}

// deref prints an optional number: its value, or "unset".
func deref[T any](p *T) string {
	if p == nil {
		return "unset"
	}
	return fmt.Sprint(*p)
}
