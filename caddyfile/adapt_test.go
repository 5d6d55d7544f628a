package caddyfile_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile" // the Caddyfile adapter
	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/authgate/caddy-authgate" // registers the authgate option and directive
)

// adaptSeparator splits a .caddyfiletest into its Caddyfile and its expected JSON,
// as in Caddy's caddytest/integration/caddyfile_adapt.
const adaptSeparator = "\n----------\n"

// TestAdapt adapts the Caddyfile of every testdata/caddyfile_adapt/*.caddyfiletest
// and compares the result with the file's expected JSON. With AUTHGATE_UPDATE_ADAPT=1
// it rewrites the expected JSON instead; review the diff before keeping it.
func TestAdapt(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "caddyfile_adapt", "*.caddyfiletest"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/caddyfile_adapt/*.caddyfiletest files")
	}
	update := os.Getenv("AUTHGATE_UPDATE_ADAPT") == "1"
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".caddyfiletest"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			caddyfile, expected, ok := strings.Cut(string(raw), adaptSeparator)
			if !ok {
				t.Fatalf("%s: no %q line between the Caddyfile and the JSON", file, strings.TrimSpace(adaptSeparator))
			}
			actual := adaptIndented(t, caddyfile)
			if update {
				if err := os.WriteFile(file, []byte(caddyfile+adaptSeparator+actual+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if !sameJSON(t, expected, actual) {
				t.Errorf("%s: adapted JSON differs from the expected JSON; got:\n%s\n(rerun with AUTHGATE_UPDATE_ADAPT=1 to rewrite the file, then review the diff)", file, actual)
			}
		})
	}
}

// adaptIndented adapts caddyfile and returns the JSON indented with tabs. Warnings
// fail the test: the files are examples and should be clean (and formatted).
func adaptIndented(t *testing.T, caddyfile string) string {
	t.Helper()
	js, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("adapt warning: %s", w)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, js, "", "\t"); err != nil {
		t.Fatalf("indenting the adapted JSON: %v", err)
	}
	return buf.String()
}

// sameJSON reports whether two JSON documents hold the same values, whatever
// their formatting and key order.
func sameJSON(t *testing.T, expected, actual string) bool {
	t.Helper()
	var e, a any
	if err := json.Unmarshal([]byte(expected), &e); err != nil {
		t.Errorf("the expected JSON is invalid: %v", err)
		return false
	}
	if err := json.Unmarshal([]byte(actual), &a); err != nil {
		t.Fatalf("the adapted JSON is invalid: %v", err)
	}
	return reflect.DeepEqual(e, a)
}
