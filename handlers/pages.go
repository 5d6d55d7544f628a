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

// pages are parsed once; each page template defines "content" inside layout.html.
var pages = map[string]*template.Template{}

func init() {
	for _, name := range []string{"signin", "signout", "message"} {
		pages[name] = template.Must(template.ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html"))
	}
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

func (rl *realm) render(w http.ResponseWriter, status int, page string, d pageData) {
	var buf bytes.Buffer
	if err := pages[page].ExecuteTemplate(&buf, "layout.html", d); err != nil {
		rl.logger.Error("rendering page", zap.String("page", page), zap.Error(err))
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

func (rl *realm) renderPage(w http.ResponseWriter, status int, d pageData) {
	rl.render(w, status, "message", d)
}

// signinPage: GET /signin, a button per OAuth provider and a form per credentials provider.
func (rl *realm) signinPage(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := pageData{
		Title:       "Sign in",
		CSRFToken:   rl.csrfToken(w, r),
		CallbackURL: rl.callbackURL(r, q.Get("callbackUrl")),
		BasePath:    rl.basePath,
	}
	if code := q.Get("error"); code != "" {
		d.Error = errorText(code)
	}
	for _, p := range rl.providers {
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
	rl.render(w, http.StatusOK, "signin", d)
}

// signoutPage: GET /signout, a confirmation form.
func (rl *realm) signoutPage(w http.ResponseWriter, r *http.Request) {
	rl.render(w, http.StatusOK, "signout", pageData{
		Title:       "Sign out",
		CSRFToken:   rl.csrfToken(w, r),
		CallbackURL: rl.callbackURL(r, r.URL.Query().Get("callbackUrl")),
		BasePath:    rl.basePath,
	})
}

// errorPage: GET /error?error=<code>.
func (rl *realm) errorPage(w http.ResponseWriter, r *http.Request, code string) {
	status, ok := errorStatus[code]
	if !ok {
		code, status = "Default", http.StatusBadRequest
	}
	rl.renderPage(w, status, pageData{
		Title:   "Sign-in problem",
		Code:    code,
		Message: errorText(code),
		Link:    rl.basePath + "/signin", LinkText: "Try signing in again",
	})
}

var errorStatus = map[string]int{
	errConfiguration:     http.StatusInternalServerError,
	errAccessDenied:      http.StatusForbidden,
	errVerification:      http.StatusForbidden,
	errOAuthSignin:       http.StatusBadGateway,
	errOAuthCallback:     http.StatusBadRequest,
	errCredentialsSignin: http.StatusUnauthorized,
	errEmailSignin:       http.StatusBadGateway,
	errAccountNotLinked:  http.StatusConflict,
	errSessionRequired:   http.StatusUnauthorized,
}

func errorText(code string) string {
	switch code {
	case errConfiguration:
		return "The sign-in service is misconfigured. The administrator can find the details in the server log."
	case errAccessDenied:
		return "You do not have permission to sign in."
	case errVerification:
		return "The sign-in link is no longer valid. It may have been used already or it may have expired."
	case errOAuthSignin:
		return "Could not start signing in with the identity provider. It may be unavailable; try again in a moment."
	case errOAuthCallback:
		return "Signing in with the identity provider could not be completed. Start again from the sign-in page."
	case errCredentialsSignin:
		return "Sign in failed. Check the username and password you entered."
	case errEmailSignin:
		return "The sign-in email could not be sent. Try again in a moment."
	case errAccountNotLinked:
		return "This email address is already used by an account that signed in another way. Sign in the way you did before."
	case errSessionRequired:
		return "Please sign in to see this page."
	}
	return "Something went wrong while signing in."
}
