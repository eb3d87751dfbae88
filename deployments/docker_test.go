package deployments

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd  string // upper case: FROM, RUN, ...
	args string
}

// stage is one FROM ... section of a Dockerfile.
type stage struct {
	from, name string
	body       []instruction
}

// readDockerfile splits a Dockerfile into its stages. It knows comments,
// parser directives and line continuations, which is all this Dockerfile
// uses; it is no general parser.
func readDockerfile(t *testing.T, path string) []stage {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var stages []stage
	var line strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		text := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(text, "#") || (text == "" && line.Len() == 0) {
			continue
		}
		if cont, ok := strings.CutSuffix(text, `\`); ok {
			line.WriteString(cont + " ")
			continue
		}
		line.WriteString(text)
		cmd, args, _ := strings.Cut(line.String(), " ")
		line.Reset()
		in := instruction{cmd: strings.ToUpper(cmd), args: strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			fields := strings.Fields(in.args)
			var s stage
			for i := 0; i < len(fields); i++ {
				switch {
				case strings.HasPrefix(fields[i], "--"):
				case strings.EqualFold(fields[i], "AS") && i+1 < len(fields):
					s.name = fields[i+1]
					i++
				default:
					s.from = fields[i]
				}
			}
			stages = append(stages, s)
			continue
		}
		if len(stages) == 0 {
			if in.cmd != "ARG" {
				t.Fatalf("%s: %s before the first FROM", path, in.cmd)
			}
			continue
		}
		stages[len(stages)-1].body = append(stages[len(stages)-1].body, in)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	stages := readDockerfile(t, "Dockerfile")
	if len(stages) != 2 {
		t.Fatalf("%d stages, want a build stage and a runtime stage", len(stages))
	}
	build, final := stages[0], stages[1]
	if !strings.HasPrefix(build.from, "golang:") || build.name == "" {
		t.Errorf("build stage FROM %s AS %q: want golang:<version> AS <name>", build.from, build.name)
	}

	// The Go version of the builder is the module's.
	goMod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	modGo := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(goMod)
	argGo := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)`).FindSubmatch(mustRead(t, "Dockerfile"))
	if modGo == nil || argGo == nil || string(modGo[1]) != string(argGo[1]) {
		t.Errorf("ARG GO_VERSION=<major.minor> must match go.mod's go directive: %q vs %q", argGo, modGo)
	}

	// Static binaries of every command, into /out/.
	var built bool
	env := ""
	for _, in := range build.body {
		if in.cmd == "ENV" {
			env += " " + in.args
		}
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			built = true
			// .git is not in the context (.dockerignore): the revision
			// reaches --version and wagate_build_info by -ldflags.
			for _, want := range []string{"-trimpath", `-ldflags="-s -w `, "-o /out/", "./cmd/...",
				"-X github.com/wagate/wagate/internal/buildinfo.revision=${REVISION}",
				"-X github.com/wagate/wagate/internal/buildinfo.version=${VERSION}"} {
				if !strings.Contains(in.args, want) {
					t.Errorf("go build without %s: %s", want, in.args)
				}
			}
		}
	}
	if !built {
		t.Error("the build stage runs no go build")
	}
	if !strings.Contains(env+" ", "CGO_ENABLED=0 ") {
		t.Errorf("the build stage must set CGO_ENABLED=0 (static binaries): ENV%s", env)
	}

	// A small non-root runtime holding the binaries, running the ingress by default.
	if !strings.HasPrefix(final.from, "gcr.io/distroless/static") && final.from != "scratch" {
		t.Errorf("runtime FROM %s: want distroless/static or scratch", final.from)
	}
	var user, cmd string
	var copied bool
	for _, in := range final.body {
		switch in.cmd {
		case "USER":
			user = in.args
		case "CMD":
			cmd = in.args
		case "COPY":
			copied = copied || (strings.Contains(in.args, "--from="+build.name) && strings.HasSuffix(in.args, "/out/ /usr/local/bin/"))
		}
	}
	if !copied {
		t.Errorf("the runtime stage does not copy /out/ from %s into /usr/local/bin/", build.name)
	}
	uid, _, _ := strings.Cut(user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root user (Kubernetes runAsNonRoot can only verify a number)", user)
	}
	var argv []string
	if err := json.Unmarshal([]byte(cmd), &argv); err != nil || len(argv) == 0 || argv[0] != "/usr/local/bin/ingress" {
		t.Errorf("CMD %s: want [\"/usr/local/bin/ingress\"] (exec form)", cmd)
	}
	for _, c := range []string{"ingress", "worker", "wagate"} {
		if _, err := os.Stat(filepath.Join("..", "cmd", c, "main.go")); err != nil {
			t.Errorf("the image should hold %s: %v", c, err)
		}
	}
}

// TestDockerignore checks that the build context keeps every file the build
// compiles or embeds, and leaves out the repository's history and outputs.
func TestDockerignore(t *testing.T) {
	f, err := os.Open("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	patterns, err := ignorefile.ReadAll(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatalf(".dockerignore: %v", err)
	}
	excluded := func(p string) bool {
		ok, err := pm.MatchesOrParentMatches(filepath.ToSlash(p))
		if err != nil {
			t.Fatalf(".dockerignore: %s: %v", p, err)
		}
		return ok
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(os.Getenv("GOROOT"), "bin", "go")
	}
	c := exec.Command(goTool, "list", "-deps", "-f", `{{if not .Standard}}{{.Dir}}{{range .GoFiles}} {{.}}{{end}}{{range .EmbedFiles}} {{.}}{{end}}{{end}}`, "./cmd/...")
	c.Dir = ".."
	c.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := c.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		rel, err := filepath.Rel(root, fields[0])
		if err != nil || strings.HasPrefix(rel, "..") {
			continue // a dependency outside the module: from the module cache
		}
		for _, f := range fields[1:] {
			needed = append(needed, filepath.Join(rel, f))
		}
	}
	if len(needed) < 10 {
		t.Fatalf("go list found only %v", needed)
	}
	for _, p := range needed {
		if excluded(p) {
			t.Errorf(".dockerignore excludes %s, which the build needs", p)
		}
	}
	for _, p := range []string{".git/HEAD", "bin/ingress", ".wagate/jetstream", "deployments/compose.yaml"} {
		if !excluded(p) {
			t.Errorf(".dockerignore keeps %s in the build context", p)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
