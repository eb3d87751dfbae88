package deployments

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/wagate/wagate/messages/streams"
)

// orderComponent turns on order within conversations for the workers and
// scales them on their partition consumers. No overlay of the tree includes
// it: TestKubernetesOrder builds one.
const orderComponent = "k8s/components/order"

// overlay writes, in a new directory, a kustomization of resource base (a
// directory of the tree) with components, and returns the directory.
// Kustomize takes no absolute path for either: they are relative to it.
func overlay(t *testing.T, base string, components ...string) string {
	t.Helper()
	dir := t.TempDir()
	rel := func(path string) string {
		a, err := filepath.Abs(path)
		if err == nil {
			path, err = filepath.Rel(dir, a)
		}
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	k := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - " + rel(base) + "\ncomponents:\n"
	for _, c := range components {
		k += "  - " + rel(c) + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKubernetesOrder checks the order component on the base: the workers
// keep order, the ScaledObject watches exactly their 64 partition consumers with the base trigger's NATS settings and a threshold
// per partition, and scales to no more workers than there are partitions
// (checkManifests checks the rest, and that the triggers and the workers'
// configuration agree).
func TestKubernetesOrder(t *testing.T) {
	const partitions = streams.Partitions
	m, _, worker := checkManifests(t, overlay(t, "k8s/base", orderComponent))
	if got := worker.environ["WAGATE_ORDER"]; got != "conversation" {
		t.Errorf("order: worker WAGATE_ORDER %q, want conversation", got)
	}

	so := m.scaledObjects[0]
	if hi := so.Spec.MaxReplicaCount; hi == nil || *hi > partitions {
		t.Errorf("order: maxReplicaCount %s, want at most %d (one worker per partition at most)", deref(hi), partitions)
	}
	var want, got []string
	for p := range partitions {
		want = append(want, streams.Config{}.PartitionConsumer(p))
	}
	base := build(t, "k8s/base").scaledObjects[0].Spec.Triggers[0].Metadata
	baseLag, err := strconv.Atoi(base["lagThreshold"])
	if err != nil {
		t.Fatalf("base: lagThreshold %q: %v", base["lagThreshold"], err)
	}
	for i, tr := range so.Spec.Triggers {
		if tr.Type != "nats-jetstream" {
			t.Errorf("order: trigger %d: type %q, want nats-jetstream", i, tr.Type)
			continue
		}
		md := tr.Metadata
		got = append(got, md["consumer"])
		for _, k := range []string{"natsServerMonitoringEndpoint", "account", "stream", "activationLagThreshold"} {
			if md[k] != base[k] {
				t.Errorf("order: trigger %d (%s): %s %q, the base trigger's is %q", i, md["consumer"], k, md[k], base[k])
			}
		}
		// Each trigger sees one partition's backlog, a sixteenth of the stream's.
		if lag, err := strconv.Atoi(md["lagThreshold"]); err != nil || lag <= 0 || lag >= baseLag {
			t.Errorf("order: trigger %d (%s): lagThreshold %q, want a positive integer below the base's whole-stream %d", i, md["consumer"], md["lagThreshold"], baseLag)
		} else if md["lagThreshold"] != so.Spec.Triggers[0].Metadata["lagThreshold"] {
			t.Errorf("order: trigger %d (%s): lagThreshold %q, trigger 0's is %q: the same threshold for every partition", i, md["consumer"], md["lagThreshold"], so.Spec.Triggers[0].Metadata["lagThreshold"])
		}
	}
	if d := listDiff(got, want); d != "" {
		t.Errorf("order: the nats-jetstream triggers' consumers are not streams.Config{}.PartitionConsumer(0..%d): %s", partitions-1, d)
	}
}
