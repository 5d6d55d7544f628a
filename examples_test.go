package authgate_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
)

// Every example adapts without warnings, and the demo (which needs no identity
// provider) also provisions, as `caddy validate` would.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("examples/*/Caddyfile")
	if err != nil || len(files) < 5 {
		t.Fatalf("examples: %v %v", files, err)
	}
	t.Setenv("AUTHGATE_SECRET", "an-example-secret-that-is-long-enough-0123456789")
	for _, f := range files {
		t.Run(filepath.Base(filepath.Dir(f)), func(t *testing.T) {
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": f})
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			for _, w := range warnings {
				t.Errorf("adapt warning: %s", w.String())
			}
		})
	}
	src, err := os.ReadFile("examples/demo/Caddyfile")
	if err != nil {
		t.Fatal(err)
	}
	if err := testcaddy.Validate(string(src)); err != nil {
		t.Fatalf("the demo does not validate: %v", err)
	}
}

// readmeBlock is a fenced Caddyfile block of the README.
type readmeBlock struct {
	line     int // of the opening fence
	text     string
	fragment bool // marked as a part of a Caddyfile: an info string or a first line "# fragment…"
}

// readmeCaddyfiles returns the README's fenced caddyfile blocks.
func readmeCaddyfiles(t *testing.T) []readmeBlock {
	t.Helper()
	src, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var blocks []readmeBlock
	var cur *readmeBlock
	for i, line := range strings.SplitAfter(string(src), "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case cur == nil && strings.HasPrefix(trimmed, "```caddyfile"):
			cur = &readmeBlock{line: i + 1, fragment: strings.Contains(trimmed, "fragment")}
		case cur != nil && trimmed == "```":
			cur.fragment = cur.fragment || strings.HasPrefix(cur.text, "# fragment")
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			cur.text += line
		}
	}
	if cur != nil {
		t.Fatalf("README.md:%d: a caddyfile block is not closed", cur.line)
	}
	return blocks
}

// Every Caddyfile block of the README is `caddy fmt` clean, and every one
// that is not marked as a fragment is a whole Caddyfile that adapts without
// warnings.
func TestReadmeCaddyfiles(t *testing.T) {
	blocks := readmeCaddyfiles(t)
	if len(blocks) < 5 {
		t.Fatalf("found %d caddyfile blocks in README.md", len(blocks))
	}
	t.Setenv("AUTHGATE_SECRET", "an-example-secret-that-is-long-enough-0123456789")
	whole := 0
	for _, b := range blocks {
		if formatted := string(caddyfile.Format([]byte(b.text))); formatted != b.text {
			t.Errorf("README.md:%d: the block is not `caddy fmt` clean; formatted, it reads:\n%s", b.line, formatted)
		}
		if b.fragment {
			continue
		}
		whole++
		_, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(b.text), map[string]any{"filename": "README.md"})
		if err != nil {
			t.Errorf("README.md:%d: the block does not adapt (mark a part of a Caddyfile with a first line `# fragment`): %v", b.line, err)
			continue
		}
		for _, w := range warnings {
			t.Errorf("README.md:%d: adapt warning: %s", b.line, w.String())
		}
	}
	if whole < 5 {
		t.Errorf("only %d whole Caddyfiles in README.md", whole)
	}
}
