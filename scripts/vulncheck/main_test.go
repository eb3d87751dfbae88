package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func TestImageFixes(t *testing.T) {
	for _, c := range []struct {
		image, fixed string
		want         bool
	}{
		{"1.26", "v1.26.9", true},    // the newest 1.26 patch has it
		{"1.26", "v1.27.2", false},   // fixed only in a later minor
		{"1.26.8", "v1.26.9", false}, // pinned below the fix
		{"1.26.10", "v1.26.9", true},
		{"1.27", "v1.26.9", true}, // a later minor than the fixed release
		{"1.26", "", false},       // no fix at all
	} {
		if got := imageFixes(c.image, c.fixed); got != c.want {
			t.Errorf("imageFixes(%q, %q) = %v, want %v", c.image, c.fixed, got, c.want)
		}
	}
}

// stream is govulncheck's JSON output for one called stdlib finding, one
// called module finding and one finding in an imported package no call
// reaches.
const stream = `{"config":{"scanner_name":"govulncheck"}}
{"osv":{"id":"GO-1","summary":"stdlib bug"}}
{"osv":{"id":"GO-2","summary":"module bug"}}
{"osv":{"id":"GO-3","summary":"unreached"}}
{"finding":{"osv":"GO-1","fixed_version":"v1.26.9","trace":[{"module":"stdlib","version":"v1.26.8","package":"net/http","function":"Serve"}]}}
{"finding":{"osv":"GO-2","fixed_version":"v1.2.4","trace":[{"module":"example.com/m","version":"v1.2.3","package":"example.com/m","function":"F"}]}}
{"finding":{"osv":"GO-3","trace":[{"module":"example.com/n","version":"v0.1.0","package":"example.com/n"}]}}
`

func TestJudge(t *testing.T) {
	findings, summaries, err := parse([]byte(stream))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name     string
		reviewed map[string]string
		image    string
		fail     bool
		lines    []string
	}{
		{"module finding fails", nil, "1.26", true, []string{"GO-2  module bug (example.com/m, fixed in v1.2.4)", "FAIL", "2 vulnerabilities reached by wagate's code, 1 more"}},
		{"reviewed", map[string]string{"GO-2": "not used"}, "1.26", false, []string{"reviewed: not used"}},
		{"image below the stdlib fix", map[string]string{"GO-2": "not used"}, "1.26.8", true, []string{"GO-1  stdlib bug (stdlib, fixed in v1.26.9)\n    FAIL"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			if got := judge(findings, summaries, c.reviewed, c.image, &out); got != c.fail {
				t.Errorf("failed = %v, want %v\n%s", got, c.fail, out.String())
			}
			for _, l := range c.lines {
				if !strings.Contains(out.String(), l) {
					t.Errorf("output lacks %q:\n%s", l, out.String())
				}
			}
		})
	}
}

func TestReviewedFile(t *testing.T) {
	reviewed, err := parseReviewed(reviewedFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(reviewed) == 0 {
		t.Fatal("reviewed.txt lists nothing")
	}
	if _, err := parseReviewed([]byte("GO-2026-1\n")); err == nil {
		t.Error("an id without a reason was accepted")
	}
}

func TestDockerfileGo(t *testing.T) {
	v, err := dockerfileGo(filepath.Join("..", "..", "deployments", "Dockerfile"))
	if err != nil || v == "" {
		t.Fatalf("dockerfileGo = %q, %v", v, err)
	}
}
