package testmailpit

import (
	"net/smtp"
	"strings"
	"testing"
)

// TestMailpit sends a message through the SMTP server, with credentials, and
// reads it back through the API.
func TestMailpit(t *testing.T) {
	m := Start(t)
	if got := len(m.Messages(t)); got != 0 {
		t.Fatalf("a new mailpit has %d messages", got)
	}
	link := "http://127.0.0.1:1/.auth/callback/email?token=abc&email=a%40example.com"
	body := "From: Sender <sender@example.com>\r\nTo: a@example.com\r\nSubject: Hello\r\n\r\nYour link:\r\n\r\n" + link + "\r\n"
	// net/smtp allows PLAIN without TLS to localhost only; Start's flags let mailpit take it.
	auth := smtp.PlainAuth("", "user", "pass", "127.0.0.1")
	if err := smtp.SendMail(m.SMTP, auth, "sender@example.com", []string{"a@example.com"}, []byte(body)); err != nil {
		t.Fatalf("sending: %v", err)
	}
	if got := m.MessagesTo(t, "A@example.com"); len(got) != 1 {
		t.Fatalf("messages to a@example.com: %v, want 1", got)
	}
	if got := m.MessagesTo(t, "b@example.com"); len(got) != 0 {
		t.Fatalf("messages to b@example.com: %v, want none", got)
	}
	msg := m.Latest(t, "a@example.com")
	if msg.Subject != "Hello" || msg.From == nil || msg.From.Address != "sender@example.com" || msg.Username != "user" {
		t.Errorf("message %+v", msg)
	}
	if got := Link(t, msg.Text, "http://127.0.0.1:1/.auth/callback/"); got != link {
		t.Errorf("Link = %q, want %q", got, link)
	}
	if !strings.HasPrefix(m.MailerURL("u", "p"), "smtp://u:p@"+m.SMTP+"?tls=none") || m.MailerURL("", "") != "smtp://"+m.SMTP+"?tls=none" {
		t.Errorf("MailerURL: %q, %q", m.MailerURL("u", "p"), m.MailerURL("", ""))
	}

	m.Stop()
	m.Stop() // idempotent
	if m.ready() {
		t.Error("mailpit answers after Stop")
	}
}
