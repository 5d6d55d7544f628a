package handlers

import (
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// A templates directory replaces the files it has; a template that does not
// parse, does not run, or is not one authgate knows fails provisioning with
// the file's name.
func TestTemplatesDirectory(t *testing.T) {
	write := func(t *testing.T, files map[string]string) string {
		dir := t.TempDir()
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  []string // in the error; nil: compiles
	}{
		{"own sign-in page", map[string]string{"signin.html": `{{define "content"}}<p id="own">{{.Title}} {{range .Credentials}}{{.ID}}{{end}}</p>{{end}}`}, nil},
		{"own layout", map[string]string{"layout.html": `<title>{{.Title}}</title>{{template "content" .}}`}, nil},
		{"syntax error", map[string]string{"signout.html": `{{define "content"}}{{if .Title}}{{end}`}, []string{"signout.html:1", "bad character"}},
		{"unknown field", map[string]string{"message.html": `{{define "content"}}{{.Nope}}{{end}}`}, []string{"message.html", "Nope"}},
		{"no content", map[string]string{"signin.html": `<p>nothing defined</p>`}, []string{"content"}},
		{"unknown file", map[string]string{"sigin.html": `{{define "content"}}{{end}}`}, []string{"sigin.html", "unknown template", "signin.html"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := write(t, tc.files)
			p, err := compilePages(&Realm{Templates: dir}, caddy.NewReplacer(), zap.NewNop())
			if tc.want == nil {
				if err != nil {
					t.Fatal(err)
				}
				w := httptest.NewRecorder()
				p.render(w, 200, "signin", pageData{Title: "Sign in", Credentials: []providerView{{ID: "local"}}})
				if _, own := tc.files["signin.html"]; own && !strings.Contains(w.Body.String(), `<p id="own">Sign in local</p>`) {
					t.Errorf("the own signin.html is not used:\n%s", w.Body)
				}
				if _, own := tc.files["layout.html"]; own && !strings.HasPrefix(w.Body.String(), "<title>Sign in</title>") {
					t.Errorf("the own layout.html is not used:\n%s", w.Body)
				}
				return
			}
			if err == nil {
				t.Fatalf("compiled; want an error containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
	if _, err := compilePages(&Realm{Templates: filepath.Join(t.TempDir(), "missing")}, caddy.NewReplacer(), zap.NewNop()); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("a missing directory: %v", err)
	}
}

// The theme's values are checked, and the pages' Content-Security-Policy
// allows images from the logo's origin and nothing more.
func TestTheme(t *testing.T) {
	for _, tc := range []struct {
		theme   ThemeConfig
		imgSrc  string // "" for none
		wantErr string
	}{
		{theme: ThemeConfig{}},
		{theme: ThemeConfig{Logo: "https://cdn.example.com/acme/logo.svg"}, imgSrc: "img-src https://cdn.example.com"},
		{theme: ThemeConfig{Logo: "http://127.0.0.1:9000/logo.png"}, imgSrc: "img-src http://127.0.0.1:9000"},
		{theme: ThemeConfig{Logo: "/logo.svg"}, imgSrc: "img-src 'self'"},
		{theme: ThemeConfig{Logo: "//evil.example/logo.svg"}, wantErr: "logo"},
		{theme: ThemeConfig{Logo: "javascript:alert(1)"}, wantErr: "logo"},
		{theme: ThemeConfig{BrandColor: "#0a7cff", ButtonTextColor: "white"}},
		{theme: ThemeConfig{BrandColor: "red;background:url(x)"}, wantErr: "brand_color"},
		{theme: ThemeConfig{ButtonTextColor: "#12345"}, wantErr: "button_text_color"},
		{theme: ThemeConfig{ColorScheme: "sepia"}, wantErr: "color_scheme"},
	} {
		p, err := compilePages(&Realm{Theme: &tc.theme}, caddy.NewReplacer(), zap.NewNop())
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("theme %+v: error %v, want one about %s", tc.theme, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("theme %+v: %v", tc.theme, err)
			continue
		}
		has := strings.Contains(p.csp, "img-src")
		if tc.imgSrc == "" && has || tc.imgSrc != "" && !strings.HasSuffix(p.csp, "; "+tc.imgSrc) {
			t.Errorf("theme %+v: CSP %q, want img-src %q", tc.theme, p.csp, tc.imgSrc)
		}
	}
}

// The operator's pages get the parameters Auth.js gives them.
func TestOwnPageURLs(t *testing.T) {
	for _, bad := range []string{"login", "//evil.example/login", `/\evil.example`, "ftp://x/y", "/login#top"} {
		if _, err := ParsePageURL(bad); err == nil {
			t.Errorf("ParsePageURL(%q) accepted it", bad)
		}
	}
	p := &pages{own: PagesConfig{NewUser: "/welcome?tour=1"}}
	if got, want := p.afterSignIn("http://app.example.com/x", true), "/welcome?tour=1&callbackUrl=http%3A%2F%2Fapp.example.com%2Fx"; got != want {
		t.Errorf("afterSignIn of a new user = %q, want %q", got, want)
	}
	if got := p.afterSignIn("/x", false); got != "/x" {
		t.Errorf("afterSignIn of a known user = %q, want /x", got)
	}
}
