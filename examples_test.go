package authgate_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"

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
