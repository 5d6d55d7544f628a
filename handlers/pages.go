package handlers

import (
	"bytes"
	"embed"
	"html/template"
	"net/http"

	"go.uber.org/zap"

	"github.com/authgate/caddy-authgate/providers"
)

//go:embed templates/*.html
var templateFS embed.FS

// builtinPages are parsed once; each page template defines "content" inside layout.html.
var builtinPages = map[string]*template.Template{}

func init() {
	for _, name := range []string{"signin", "signout", "message"} {
		builtinPages[name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
}

// pages renders the realm's HTML pages.
type pages struct {
	templates map[string]*template.Template
	logger    *zap.Logger
}

func newPages(logger *zap.Logger) *pages {
	return &pages{templates: builtinPages, logger: logger}
}

// pageData is what every page template receives.
type pageData struct {
	Title    string
	Message  string
	Code     string
	Link     string
	LinkText string

	CSRFToken   string
	CallbackURL string
	BasePath    string
	Error       string
	OAuth       []providerView
	Email       []providerView
	Credentials []providerView
}

type providerView struct{ ID, Name string }

// render answers with a page.
func (p *pages) render(w http.ResponseWriter, status int, page string, d pageData) {
	var buf bytes.Buffer
	if err := p.templates[page].ExecuteTemplate(&buf, "layout.html", d); err != nil {
		p.logger.Error("rendering page", zap.String("page", page), zap.Error(err))
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' https: http:; frame-ancestors 'none'; base-uri 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// message answers with the page that shows a title and a message.
func (p *pages) message(w http.ResponseWriter, status int, d pageData) {
	p.render(w, status, "message", d)
}

// unavailable answers a request whose session could not be read because the
// store is down: 503 with a page for browsers, JSON for others.
func unavailable(w http.ResponseWriter, r *http.Request, p *pages, logger *zap.Logger, err error) error {
	logger.Error("the session store is unavailable", zap.Error(err))
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Retry-After", "5")
	if isNavigation(r) {
		p.message(w, http.StatusServiceUnavailable, pageData{
			Title:   "Temporarily unavailable",
			Message: "Your session cannot be checked right now. Try again in a few seconds.",
		})
		return nil
	}
	writeError(w, http.StatusServiceUnavailable, errSessionUnavailable)
	return nil
}

// signinPage: GET /signin, a button per OAuth provider and a form per credentials provider.
func (rl *realm) signinPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := pageData{
		Title:       "Sign in",
		CSRFToken:   rl.csrf.token(w, r),
		CallbackURL: rl.callbackURL(r, q.Get("callbackUrl")),
		BasePath:    rl.basePath,
	}
	if code := q.Get("error"); code != "" {
		d.Error = errorText(code)
	}
	for _, p := range rl.providers.list {
		v := providerView{ID: p.ID(), Name: p.Name()}
		switch p.Type() {
		case providers.TypeCredentials:
			d.Credentials = append(d.Credentials, v)
		case providers.TypeEmail:
			d.Email = append(d.Email, v)
		default:
			d.OAuth = append(d.OAuth, v)
		}
	}
	rl.pages.render(w, http.StatusOK, "signin", d)
}

// signoutPage: GET /signout, a confirmation form.
func (rl *realm) signoutPage(w http.ResponseWriter, r *http.Request) {
	rl.pages.render(w, http.StatusOK, "signout", pageData{
		Title:       "Sign out",
		CSRFToken:   rl.csrf.token(w, r),
		CallbackURL: rl.callbackURL(r, r.URL.Query().Get("callbackUrl")),
		BasePath:    rl.basePath,
	})
}

// errorPage: GET /error?error=<code>.
func (rl *realm) errorPage(w http.ResponseWriter, r *http.Request) {
	code, e := lookupError(r.URL.Query().Get("error"))
	rl.pages.message(w, e.status, pageData{
		Title:   "Sign-in problem",
		Code:    code,
		Message: e.text,
		Link:    rl.basePath + "/signin", LinkText: "Try signing in again",
	})
}

// verifyRequestPage: GET /verify-request.
func (rl *realm) verifyRequestPage(w http.ResponseWriter, _ *http.Request) {
	rl.pages.message(w, http.StatusOK, pageData{
		Title:   "Check your email",
		Message: "A sign-in link has been sent to your email address. It can be used once.",
	})
}
