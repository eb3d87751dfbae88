// Command vulncheck runs govulncheck over wagate's main module against a
// vulnerability database built locally from golang.org/x/vulndb (the Go
// vulnerability database's own source, served by the Go module proxy), so
// that it works where vuln.go.dev cannot be reached, and applies wagate's
// policy to what it finds:
//
//   - a vulnerability that wagate's code reaches (a call path to an affected
//     function) in a required module fails the check, unless it is listed in
//     reviewed.txt with the reason it does not apply;
//   - a vulnerability of the standard library fails the check unless the
//     release image builds with a Go that fixes it: deployments/Dockerfile's
//     GO_VERSION is a minor version ("1.26", the newest patch of it at build
//     time) or a patch at least the fixed one. Either way it is printed with
//     the Go version that fixes it, for the machines that build wagate
//     themselves;
//   - vulnerabilities in imported packages or required modules that no call
//     path reaches are counted, not failed (govulncheck's own default).
//
// Usage (from the scripts module; make vuln does this):
//
//	go run ./vulncheck [-dir ..] [-db dir]
//
// It exits 0 when the policy passes, 1 when it fails, 2 on a usage or tool
// error.
package main

import (
	"bufio"
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"golang.org/x/mod/semver"
)

// The pinned tool and database versions: change them together with a run
// of make vuln.
const (
	govulncheck = "golang.org/x/vuln/cmd/govulncheck@v1.10.0"
	vulndbMod   = "golang.org/x/vulndb"
	vulndbVer   = "v0.0.0-20261105234957-e22db6528018"
)

func main() {
	dir := flag.String("dir", "..", "the wagate module to check")
	db := flag.String("db", "", "a govulncheck database directory (default: built from "+vulndbMod+"@"+vulndbVer+" into the user cache)")
	flag.Parse()
	failed, err := run(*dir, *db, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "vulncheck:", err)
		os.Exit(2)
	}
	if failed {
		os.Exit(1)
	}
}

func run(dir, db string, out io.Writer) (failed bool, err error) {
	if db == "" {
		if db, err = buildDB(); err != nil {
			return false, err
		}
	}
	reviewed, err := parseReviewed(reviewedFile)
	if err != nil {
		return false, err
	}
	imageGo, err := dockerfileGo(filepath.Join(dir, "deployments", "Dockerfile"))
	if err != nil {
		return false, err
	}
	abs, err := filepath.Abs(db)
	if err != nil {
		return false, err
	}
	cmd := exec.Command("go", "run", govulncheck, "-db", "file://"+abs, "-format", "json", "-C", dir, "./...")
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("govulncheck: %w", err)
	}
	findings, summaries, err := parse(raw)
	if err != nil {
		return false, err
	}
	return judge(findings, summaries, reviewed, imageGo, out), nil
}

// finding is the part of govulncheck's JSON "finding" message that the
// policy reads (golang.org/x/vuln/internal/govulncheck.Finding).
type finding struct {
	OSV          string `json:"osv"`
	FixedVersion string `json:"fixed_version"`
	Trace        []struct {
		Module   string `json:"module"`
		Version  string `json:"version"`
		Package  string `json:"package"`
		Function string `json:"function"`
	} `json:"trace"`
}

// parse reads govulncheck's stream of JSON messages.
func parse(raw []byte) ([]finding, map[string]string, error) {
	var findings []finding
	summaries := map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(raw))
	for {
		var m struct {
			OSV *struct {
				ID      string `json:"id"`
				Summary string `json:"summary"`
			} `json:"osv"`
			Finding *finding `json:"finding"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return findings, summaries, nil
		} else if err != nil {
			return nil, nil, fmt.Errorf("govulncheck output: %w", err)
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		if m.Finding != nil {
			findings = append(findings, *m.Finding)
		}
	}
}

// judge prints one line per vulnerability wagate's code reaches, and says
// whether the policy fails.
func judge(findings []finding, summaries, reviewed map[string]string, imageGo string, out io.Writer) (failed bool) {
	type verdict struct{ module, fixed string }
	called := map[string]verdict{}
	uncalled := map[string]bool{}
	for _, f := range findings {
		if len(f.Trace) == 0 {
			continue
		}
		if f.Trace[0].Function == "" {
			uncalled[f.OSV] = true
			continue
		}
		called[f.OSV] = verdict{f.Trace[0].Module, f.FixedVersion}
	}
	ids := make([]string, 0, len(called))
	for id := range called {
		ids = append(ids, id)
		delete(uncalled, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		v := called[id]
		fixed := v.fixed
		if fixed == "" {
			fixed = "no fix"
		}
		var status string
		switch {
		case reviewed[id] != "":
			status = "reviewed: " + reviewed[id]
		case v.module == "stdlib" && imageFixes(imageGo, v.fixed):
			status = "standard library; the image builds with Go " + imageGo + ", which fixes it; build with Go " + strings.TrimPrefix(v.fixed, "v") + " or newer yourself"
		default:
			status = "FAIL: reached by wagate's code; upgrade, or review it in scripts/vulncheck/reviewed.txt"
			failed = true
		}
		fmt.Fprintf(out, "%s  %s (%s, fixed in %s)\n    %s\n", id, summaries[id], v.module, fixed, status)
	}
	fmt.Fprintf(out, "%d vulnerabilities reached by wagate's code, %d more in packages or modules it does not call\n", len(ids), len(uncalled))
	return failed
}

// imageFixes says whether the Go of the release image (a minor version
// such as "1.26", the newest patch of it, or an exact "1.26.10") includes
// the standard library fix fixed ("v1.26.9").
func imageFixes(imageGo, fixed string) bool {
	if fixed == "" {
		return false
	}
	img := "v" + imageGo
	if semver.MajorMinor(img) == img { // a floating minor: its newest patch
		return semver.MajorMinor(fixed) == img || semver.Compare(semver.MajorMinor(fixed), img) < 0
	}
	return semver.Compare(img, fixed) >= 0
}

var goVersionArg = regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)$`)

// dockerfileGo returns the Dockerfile's GO_VERSION.
func dockerfileGo(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	m := goVersionArg.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s: no ARG GO_VERSION=", path)
	}
	return string(m[1]), nil
}

// reviewedFile lists the reviewed vulnerabilities: "GO-YYYY-NNNN reason"
// lines; # starts a comment.
//
//go:embed reviewed.txt
var reviewedFile []byte

// parseReviewed reads reviewed.txt's lines.
func parseReviewed(b []byte) (map[string]string, error) {
	const path = "reviewed.txt"
	reviewed := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, ok := strings.Cut(line, " ")
		if !ok || strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("%s: %q: want an id and the reason it does not apply", path, line)
		}
		reviewed[id] = strings.TrimSpace(reason)
	}
	return reviewed, sc.Err()
}

// buildDB writes the database of vulndbVer once into the user cache, with
// vulndb's own indexdb command over its OSV files, and returns its path.
func buildDB() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dst := filepath.Join(cache, "wagate", "vulndb-"+vulndbVer)
	if _, err := os.Stat(filepath.Join(dst, "index", "db.json")); err == nil {
		return dst, nil
	}
	var info struct{ Dir string }
	out, err := exec.Command("go", "mod", "download", "-json", vulndbMod+"@"+vulndbVer).Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w", vulndbMod, vulndbVer, err)
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: no directory in %s", vulndbMod, vulndbVer, out)
	}
	tmp := dst + ".tmp"
	_ = os.RemoveAll(tmp)
	index := exec.Command("go", "run", vulndbMod+"/cmd/indexdb@"+vulndbVer, "-vulns", filepath.Join(info.Dir, "data", "osv"), "-out", tmp)
	index.Stdout, index.Stderr = os.Stderr, os.Stderr
	if err := index.Run(); err != nil {
		return "", fmt.Errorf("indexdb: %w", err)
	}
	return dst, os.Rename(tmp, dst)
}
