package caddyfile_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
)

// TestValidateTemplates: a templates directory whose template does not parse
// or run, or holds a file authgate does not know, fails validation with the
// file's name; a good one validates.
func TestValidateTemplates(t *testing.T) {
	dir := t.TempDir()
	users := writeFile(t, dir, "users.txt", "alice:$2a$10$HjwKohX5c8ehxluGsHyBOO7Qsmtzen8M14Sr5fPlvuMnl1D41cgfO\n")
	for _, tc := range []struct {
		name, file, text string
		want             []string // nil: validates
	}{
		{"good", "signin.html", `{{define "content"}}<p>{{.Title}}</p>{{end}}`, nil},
		{"syntax error", "signin.html", "{{define \"content\"}}\n<p>{{.Title}</p>\n{{end}}", []string{"signin.html:2", "templates"}},
		{"unknown field", "message.html", `{{define "content"}}{{.Mesage}}{{end}}`, []string{"message.html", "Mesage"}},
		{"unknown file", "error.html", `{{define "content"}}{{end}}`, []string{"error.html", "unknown template", "layout.html, signin.html, signout.html, message.html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tdir := filepath.Join(t.TempDir(), "authgate")
			if err := os.Mkdir(tdir, 0o755); err != nil {
				t.Fatal(err)
			}
			writeFile(t, tdir, tc.file, tc.text)
			caddyfile := withRealm("secret "+testSecret+"\n\t\ttemplates "+tdir,
				"provider credentials {\n\t\t\tusers_file "+users+"\n\t\t}", "authgate")
			err := testcaddy.Validate(caddyfile)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("validation failed: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validation succeeded; want an error containing %q", tc.want)
			}
			t.Log(err)
			for _, w := range append(tc.want, tdir) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
