package providers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	mail "github.com/wneessen/go-mail"
	"go.uber.org/zap"
)

// TypeEmail is the email provider's type, as Auth.js names it.
const TypeEmail = "email"

// ErrInvalidEmail is returned for an address that is not a plain mailbox.
var ErrInvalidEmail = errors.New("not a valid email address")

// Email signs users in with a link sent to their address.
type Email struct {
	id, name string
	mailer   mailer
	from     string
	maxAge   time.Duration
	subject  string
	html     *htmltemplate.Template
}

// mailer delivers one message.
type mailer interface {
	send(ctx context.Context, from, to, subject, text, html string) error
}

const defaultEmailMaxAge = 24 * time.Hour

var defaultEmailHTML = htmltemplate.Must(htmltemplate.New("email").Parse(`<!doctype html>
<html><body style="font-family:system-ui,sans-serif;background:#f6f8fa;padding:24px">
<table role="presentation" style="max-width:480px;margin:0 auto;background:#fff;border:1px solid #d0d7de;border-radius:12px;padding:32px">
<tr><td style="font-size:18px;font-weight:600;padding-bottom:16px">Sign in to {{.Host}}</td></tr>
<tr><td style="padding-bottom:24px"><a href="{{.URL}}" style="display:inline-block;padding:10px 20px;background:#0969da;color:#fff;border-radius:6px;text-decoration:none">Sign in</a></td></tr>
<tr><td style="font-size:13px;color:#57606a">If you did not request this email you can safely ignore it.</td></tr>
</table></body></html>`))

func newEmail(cfg Config, logger *zap.Logger) (*Email, error) {
	if cfg.Mailer == "" {
		return nil, fmt.Errorf("provider %q: missing mailer (smtp://user:pass@host:port, or `log` for development)", cfg.ID)
	}
	m, err := newMailer(cfg.Mailer, logger)
	if err != nil {
		return nil, fmt.Errorf("provider %q: mailer: %v", cfg.ID, err)
	}
	e := &Email{id: cfg.ID, name: displayName(cfg, "Email"), mailer: m, from: cfg.From, maxAge: time.Duration(cfg.MaxAge), subject: cfg.Subject, html: defaultEmailHTML}
	if e.from == "" {
		return nil, fmt.Errorf("provider %q: missing from (the sender address)", cfg.ID)
	}
	if err := mail.NewMsg().From(e.from); err != nil {
		return nil, fmt.Errorf("provider %q: from %q: %v", cfg.ID, e.from, err)
	}
	if e.maxAge <= 0 {
		e.maxAge = defaultEmailMaxAge
	}
	if cfg.Template != "" {
		src, err := os.ReadFile(cfg.Template)
		if err != nil {
			return nil, fmt.Errorf("provider %q: template: %v", cfg.ID, err)
		}
		if e.html, err = htmltemplate.New("email").Parse(string(src)); err != nil {
			return nil, fmt.Errorf("provider %q: template %s: %v", cfg.ID, cfg.Template, err)
		}
	}
	return e, nil
}

func (e *Email) ID() string   { return e.id }
func (e *Email) Name() string { return e.name }
func (e *Email) Type() string { return TypeEmail }

// MaxAge is how long a sign-in link stays valid.
func (e *Email) MaxAge() time.Duration { return e.maxAge }

// SendLink mails the sign-in link to the (normalised) address.
func (e *Email) SendLink(ctx context.Context, to, link, host string) error {
	subject := e.subject
	if subject == "" {
		subject = "Sign in to " + host
	}
	var html bytes.Buffer
	if err := e.html.Execute(&html, map[string]string{"URL": link, "Host": host, "Email": to}); err != nil {
		return fmt.Errorf("rendering the email: %v", err)
	}
	text := "Sign in to " + host + ":\n\n" + link + "\n\nIf you did not request this email you can safely ignore it.\n"
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	return e.mailer.send(ctx, e.from, to, subject, text, html.String())
}

// NormalizeEmail trims and lowercases an address and checks that it is a plain
// mailbox: exactly one @, a non-empty local part, a domain with a dot, and none of
// the characters that let one string name several mailboxes or headers.
func NormalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) > 254 || strings.Count(s, "@") != 1 || strings.ContainsAny(s, "\",;<>()[]\\ \t\r\n") {
		return "", ErrInvalidEmail
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" || !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") || strings.Contains(domain, "..") {
		return "", ErrInvalidEmail
	}
	for _, c := range s {
		if c < 0x21 || c == 0x7f {
			return "", ErrInvalidEmail
		}
	}
	return s, nil
}

// logMailer prints links to the log instead of sending them: for development.
type logMailer struct{ logger *zap.Logger }

func (m logMailer) send(_ context.Context, _, to, subject, text, _ string) error {
	m.logger.Warn("email sign-in link (mailer log: development only, never use it in production)",
		zap.String("to", to), zap.String("subject", subject), zap.String("message", text))
	return nil
}

// smtpMailer sends through an SMTP server with go-mail.
type smtpMailer struct {
	host string
	opts []mail.Option
}

func newMailer(raw string, logger *zap.Logger) (mailer, error) {
	if raw == "log" {
		logger.Warn("the email provider prints sign-in links to the log (mailer log): use it for development only")
		return logMailer{logger: logger}, nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%q: want smtp://user:pass@host:port, smtps://… or log", redactURL(raw))
	}
	if u.Hostname() == "" || u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%s: want smtp://user:pass@host:port, smtps://… or log", redactURL(raw))
	}
	m := &smtpMailer{host: u.Hostname()}
	port := 587
	switch u.Scheme {
	case "smtp":
		policy := mail.TLSOpportunistic
		switch u.Query().Get("tls") {
		case "", "opportunistic":
		case "required":
			policy = mail.TLSMandatory
		case "none":
			policy = mail.NoTLS
		default:
			return nil, fmt.Errorf("%s: tls=%s: want opportunistic, required or none", redactURL(raw), u.Query().Get("tls"))
		}
		m.opts = append(m.opts, mail.WithTLSPortPolicy(policy))
	case "smtps":
		port = 465
		m.opts = append(m.opts, mail.WithSSL())
	default:
		return nil, fmt.Errorf("%s: want smtp://, smtps:// or log", redactURL(raw))
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("%s: bad port", redactURL(raw))
		}
		port = n
	}
	m.opts = append(m.opts, mail.WithPort(port), mail.WithTimeout(15*time.Second))
	if u.User != nil {
		pass, _ := u.User.Password()
		m.opts = append(m.opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(u.User.Username()), mail.WithPassword(pass))
	}
	return m, nil
}

func (m *smtpMailer) send(ctx context.Context, from, to, subject, text, html string) error {
	msg := mail.NewMsg()
	if err := msg.From(from); err != nil {
		return fmt.Errorf("from: %v", err)
	}
	if err := msg.To(to); err != nil {
		return fmt.Errorf("to: %v", err)
	}
	msg.Subject(subject)
	msg.SetDate()
	msg.SetMessageID()
	msg.SetBodyString(mail.TypeTextPlain, text)
	msg.AddAlternativeString(mail.TypeTextHTML, html)
	c, err := mail.NewClient(m.host, m.opts...)
	if err != nil {
		return err
	}
	if err := c.DialAndSendWithContext(ctx, msg); err != nil {
		return fmt.Errorf("sending through %s: %v", m.host, err)
	}
	return nil
}

// redactURL hides a URL's password, for error messages and logs.
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
