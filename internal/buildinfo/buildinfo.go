// Package buildinfo reports which build of wagate is running: its version
// and the VCS revision it was built from, for --version and the
// wagate_build_info metric.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Set at link time when the build has no VCS stamp (a source tree without
// .git, or -buildvcs=false):
//
//	go build -ldflags "-X github.com/wagate/wagate/internal/buildinfo.version=v1.2.0 -X github.com/wagate/wagate/internal/buildinfo.revision=$(git rev-parse HEAD)"
var (
	version  string
	revision string
)

// Info is the version and revision of the running binary.
type Info struct {
	// Version is the version given at link time, else the main module's
	// version ("(devel)" for a build from a source tree).
	Version string
	// Revision is the VCS revision (a git commit hash) given at link time,
	// else the one the go command stamped (vcs.revision), else "unknown".
	Revision string
	// Modified reports that the tree had uncommitted changes (vcs.modified).
	Modified bool
	// GoVersion is the Go release that built the binary.
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	in := Info{Version: version, Revision: revision, GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if ok {
		if in.Version == "" {
			in.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if revision == "" {
					in.Revision = s.Value
				}
			case "vcs.modified":
				in.Modified = revision == "" && s.Value == "true"
			}
		}
	}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	if in.Revision == "" {
		in.Revision = "unknown"
	}
	return in
}

// String formats i for --version: "v1.2.0 (revision 3f2c…, modified) go1.26.1".
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s (revision %s) %s", i.Version, rev, i.GoVersion)
}

// Collector returns the wagate_build_info gauge: always 1, labelled with the
// version and revision ("-modified" appended when the tree had uncommitted
// changes), so that a dashboard shows which build each process runs.
func Collector() prometheus.Collector {
	i := Read()
	rev := i.Revision
	if i.Modified {
		rev += "-modified"
	}
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "wagate_build_info",
		Help:        "The build of wagate this process runs: always 1, labelled with its version and VCS revision.",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": rev, "goversion": i.GoVersion},
	}, func() float64 { return 1 })
}
