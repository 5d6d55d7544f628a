package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRepoRoot(t *testing.T) {
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(b), "module github.com/authgate/caddy-authgate\n") {
		t.Errorf("RepoRoot() = %s, whose go.mod is not this module's", root)
	}
	wd, _ := os.Getwd()
	if want := filepath.Join(root, "internal", "testenv"); wd != want {
		t.Errorf("RepoRoot() = %s; the working directory %s is not its internal/testenv", root, wd)
	}
}

// recorder is a testing.TB that records Fatalf and Skipf instead of ending
// the test.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = strings.TrimSpace(fmt.Sprintf(format, args...))
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skip = strings.TrimSpace(fmt.Sprintf(format, args...))
}

func TestUnavailable(t *testing.T) {
	for _, ci := range []string{"true", "", "false"} {
		t.Run("CI="+ci, func(t *testing.T) {
			t.Setenv("CI", ci)
			r := &recorder{TB: t}
			Unavailable(r, "testx: %s not found", "server")
			if ci == "true" {
				if r.fatal != "testx: server not found" || r.skip != "" {
					t.Errorf("on CI: Fatalf %q, Skipf %q; want Fatalf only", r.fatal, r.skip)
				}
				return
			}
			if r.fatal != "" || r.skip != "testx: server not found; `make test` installs it" {
				t.Errorf("off CI: Fatalf %q, Skipf %q; want Skipf only", r.fatal, r.skip)
			}
		})
	}
}
