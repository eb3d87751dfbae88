package buildinfo

import (
	"strings"
	"testing"
)

// The -X names of the Makefile and the Dockerfile are checked by cmd's
// TestBinariesAnswerHelpAndVersion, whose binaries are stamped the same way.

// TestRead checks the fallbacks of a binary built with neither -ldflags nor
// a VCS stamp (go test builds without one).
func TestRead(t *testing.T) {
	i := Read()
	if i.Version == "" || i.Revision == "" || !strings.HasPrefix(i.GoVersion, "go") {
		t.Errorf("Read() = %+v: empty fields", i)
	}
}
