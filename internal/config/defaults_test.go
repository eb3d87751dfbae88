package config_test

import (
	"testing"

	"github.com/wagate/wagate/dedupe"
	"github.com/wagate/wagate/ingest"
	"github.com/wagate/wagate/internal/config"
	"github.com/wagate/wagate/messages/streams"
	"github.com/wagate/wagate/worker"
)

// The defaults a struct tag repeats from a package equal the package's own,
// so a program embedding ingest or worker with their zero Config runs as the
// commands do.
func TestDefaultsMatchPackages(t *testing.T) {
	t.Setenv("WAGATE_INSECURE_NO_SECRET", "true")
	c, err := config.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []struct {
		name      string
		got, want any
	}{
		{"WAGATE_DEDUPE_HORIZON", c.DedupeHorizon, dedupe.DefaultHorizon},
		{"WAGATE_STREAM_MAX_AGE", c.StreamMaxAge, streams.DefaultMaxAge},
		{"WAGATE_SHUTDOWN_TIMEOUT (ingest)", c.ShutdownTimeout, ingest.DefaultShutdownTimeout},
		{"WAGATE_SHUTDOWN_TIMEOUT (worker)", c.ShutdownTimeout, worker.DefaultShutdownTimeout},
	} {
		if d.got != d.want {
			t.Errorf("%s default %v, package default %v", d.name, d.got, d.want)
		}
	}
}
