package e2e

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testmailpit"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// mailFrom is the sender of every email provider in these tests.
const mailFrom = `"authgate <auth@example.com>"`

// emailProvider is a realm's `provider email [<id>]` block sending through
// mailer, with more subdirectives (one per line) in extra.
func emailProvider(id, mailer string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\t\tprovider email %s {\n\t\t\tmailer %s\n\t\t\tfrom %s\n", id, mailer, mailFrom)
	for _, e := range extra {
		fmt.Fprintf(&b, "\t\t\t%s\n", e)
	}
	b.WriteString("\t\t}\n")
	return b.String()
}

// requestLink asks for a sign-in link through the sign-in page's form of the
// email provider, for address, and returns authgate's answer.
func (b *browser) requestLink(base, provider, address, callbackURL string) response {
	b.t.Helper()
	f := b.signInForm(base, callbackURL, "/.auth/signin/"+provider)
	if _, ok := f.Values["email"]; !ok {
		b.t.Fatalf("the email form of %s has no email field: %v", provider, f.Values)
	}
	f.Values.Set("email", address)
	return b.post(base+f.Action, f.Values)
}

// wantLinkSent checks that r sent the browser to the "check your email" page,
// and that the page is there.
func wantLinkSent(t *testing.T, b *browser, base string, r response, provider string) {
	t.Helper()
	loc := wantRedirect(t, r)
	if q := loc.Query(); loc.Path != "/.auth/verify-request" || q.Get("provider") != provider || q.Get("type") != "email" {
		t.Fatalf("after asking for a link: Location %q, want /.auth/verify-request?provider=%s&type=email&…", r.Header.Get("Location"), provider)
	}
	wantNoSetCookie(t, r, sessionCookie)
	page := b.navigate(base + r.Header.Get("Location"))
	wantStatus(t, page, http.StatusOK)
	if text := pageText(t, page.Body); !strings.Contains(text, "Check your email") || !strings.Contains(text, "sign-in link has been sent") {
		t.Errorf("the verify-request page does not say a link was sent: %s", text)
	}
}

// callbackPrefix is how every sign-in link of provider starts.
func callbackPrefix(base, provider string) string {
	return base + "/.auth/callback/" + provider + "?"
}

// withLinkQuery returns link with its query changed by edit.
func withLinkQuery(t *testing.T, link string, edit func(q url.Values)) string {
	t.Helper()
	u := mustParse(t, link)
	q := u.Query()
	edit(q)
	u.RawQuery = q.Encode()
	return u.String()
}

// signInCalls returns the sign_in webhook calls the hook server received for
// a user with the email address.
func (h *hookServer) signInCalls(email string) []hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []hookCall
	for _, c := range h.calls {
		if u, _ := c.Payload["user"].(map[string]any); c.Path == "/sign-in" && u["email"] == email {
			out = append(out, c)
		}
	}
	return out
}

// verificationRequest is the sign_in payload's email.verification_request,
// and whether it is there.
func verificationRequest(c hookCall) (bool, bool) {
	e, _ := c.Payload["email"].(map[string]any)
	v, ok := e["verification_request"].(bool)
	return v, ok
}

// wantVerificationFailed checks that following a sign-in link ended on the
// Verification error page (403) without a session.
func wantVerificationFailed(t *testing.T, b *browser, base, link string) {
	t.Helper()
	r := b.navigate(link)
	wantNoSetCookie(t, r, sessionCookie)
	page := wantErrorPage(t, b, base, r, "Verification", http.StatusForbidden)
	wantNoLeak(t, page.Body, "store:", "not found")
	if !strings.Contains(pageText(t, page.Body), "The sign-in link is no longer valid.") {
		t.Errorf("the Verification page does not explain it: %s", pageText(t, page.Body))
	}
	if b.cookie(base, sessionCookie) != "" {
		t.Fatal("the browser has a session cookie after a refused link")
	}
}

// TestEmailSignIn signs in with links mailed through a real SMTP server
// (mailpit): the address is normalised, sign_in runs when the link is asked
// for and again when it is followed, a link signs in once and only for its
// address and lifetime; denied and malformed addresses get no email, a mail
// server that is down or refuses the message ends on EmailSignin and leaves no
// usable link, and too many links for one address are refused.
func TestEmailSignIn(t *testing.T) {
	mp := testmailpit.Start(t)
	flaky := startFlakySMTP(t)
	hook := newHookServer(t, func(w http.ResponseWriter, r *http.Request, p map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`) // no decision: the default (allow) decides
	})
	port, deadPort := testcaddy.FreePort(t), testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	mailer := mp.MailerURL("authgate", "mail-password-e2e")
	caddy := testcaddy.Start(t, globalBlock(
		"\t\turl "+base+"\n"+
			emailProvider("", mailer)+
			emailProvider("quick", mailer, "name \"Quick link\"", "max_age 1s")+
			emailProvider("down", fmt.Sprintf("smtp://authgate:mail-password-e2e@127.0.0.1:%d?tls=none", deadPort))+
			emailProvider("flaky", "smtp://"+flaky.addr+"?tls=none")+
			fmt.Sprintf(`
		callbacks {
			sign_in {
				deny email *@blocked.test
				webhook %s/sign-in {
					secret %s
				}
			}
		}
`, hook.URL, hookSecret))+siteBlock(port, "authgate", up.URL))

	// Every request comes from 127.0.0.1: the subtests below ask for fewer
	// links than the per-client limit (20 an hour), and for no address more
	// than the per-address limit (5), but the rate-limit subtest.
	b := newBrowser(t)
	target := base + "/app?x=1"
	var aliceSub string

	t.Run("sign in", func(t *testing.T) {
		b := b.in(t)
		// The sign-in page has an email form.
		wantSignInRedirect(t, b.navigate(target), target)
		f := b.signInForm(base, target, "/.auth/signin/email")
		for _, k := range []string{"csrfToken", "callbackUrl", "email"} {
			if _, ok := f.Values[k]; !ok {
				t.Errorf("the email form has no %s field: %v", k, f.Values)
			}
		}
		if f.Values.Get("callbackUrl") != target {
			t.Errorf("the email form's callbackUrl is %q, want %q", f.Values.Get("callbackUrl"), target)
		}

		// Asking for a link: sign_in runs with verification_request, one email
		// goes to the normalised address, the browser is told to check it.
		r := b.requestLink(base, "email", "Alice@Example.com ", target)
		wantLinkSent(t, b, base, r, "email")
		if all := mp.Messages(t); len(all) != 1 {
			t.Fatalf("mailpit received %d messages, want 1: %v", len(all), all)
		}
		msg := mp.Latest(t, "alice@example.com")
		if len(msg.To) != 1 || msg.To[0].Address != "alice@example.com" {
			t.Errorf("the email went to %v, want alice@example.com only", msg.To)
		}
		if msg.From == nil || msg.From.Address != "auth@example.com" || msg.From.Name != "authgate" {
			t.Errorf("the email is from %v, want authgate <auth@example.com>", msg.From)
		}
		if want := "Sign in to " + strings.TrimPrefix(base, "http://"); msg.Subject != want {
			t.Errorf("the email's subject is %q, want %q", msg.Subject, want)
		}
		if msg.Username != "authgate" {
			t.Errorf("the email was sent with SMTP user %q, want authgate (from the mailer URL)", msg.Username)
		}
		link := testmailpit.Link(t, msg.Text, callbackPrefix(base, "email"))
		q := mustParse(t, link).Query()
		if q.Get("email") != "alice@example.com" || q.Get("callbackUrl") != target || len(q.Get("token")) < 32 {
			t.Errorf("the link %s: want email alice@example.com, callbackUrl %s and a random token", link, target)
		}
		if !strings.Contains(msg.HTML, strings.ReplaceAll(link, "&", "&amp;")) {
			t.Errorf("the HTML body does not have the link:\n%s", msg.HTML)
		}
		calls := hook.signInCalls("alice@example.com")
		if len(calls) != 1 {
			t.Fatalf("the sign_in webhook received %d calls for alice, want 1", len(calls))
		}
		if v, ok := verificationRequest(calls[0]); !ok || !v {
			t.Errorf("sign_in payload email = %v, want verification_request true", calls[0].Payload["email"])
		}
		if acc, _ := calls[0].Payload["account"].(map[string]any); acc["provider"] != "email" || acc["type"] != "email" {
			t.Errorf("sign_in payload account = %v, want the email provider", acc)
		}
		if up.Count() != 0 {
			t.Fatal("the upstream received a request before the link was followed")
		}

		// Following the link signs in and returns to where the user was going.
		r = b.navigate(link)
		wantLocation(t, r, target)
		claims := sessionClaims(t, r)
		aliceSub = wantStoredUserID(t, claims)
		if claims["email"] != "alice@example.com" {
			t.Errorf("session token email = %v, want alice@example.com", claims["email"])
		}
		wantStatus(t, b.navigate(target), http.StatusOK)
		seen := up.Last(t)
		for k, want := range map[string]string{"X-Auth-Request-Email": "alice@example.com", "X-Auth-Request-User": aliceSub} {
			if got := seen.HeaderValues(k); len(got) != 1 || got[0] != want {
				t.Errorf("the upstream saw %s = %q, want [%q]", k, got, want)
			}
		}
		// sign_in ran again, without verification_request.
		calls = hook.signInCalls("alice@example.com")
		if len(calls) != 2 {
			t.Fatalf("the sign_in webhook received %d calls for alice, want 2", len(calls))
		}
		if v, _ := verificationRequest(calls[1]); v {
			t.Errorf("sign_in payload email = %v on following the link, want no verification_request", calls[1].Payload["email"])
		}

		// The link works once.
		wantVerificationFailed(t, newBrowser(t), base, link)
		if n := len(hook.signInCalls("alice@example.com")); n != 2 {
			t.Errorf("a used link ran sign_in (%d calls, want 2)", n)
		}
	})

	// A link changed in any way fails, and leaves the real link usable.
	t.Run("tampered links", func(t *testing.T) {
		b := newBrowser(t)
		wantLinkSent(t, b, base, b.requestLink(base, "email", "alice@example.com", base+"/again"), "email")
		link := testmailpit.Link(t, mp.Latest(t, "alice@example.com").Text, callbackPrefix(base, "email"))
		tok := mustParse(t, link).Query().Get("token")
		for name, forged := range map[string]string{
			"tampered token":    withLinkQuery(t, link, func(q url.Values) { q.Set("token", flip(tok, len(tok)/2)) }),
			"no token":          withLinkQuery(t, link, func(q url.Values) { q.Del("token") }),
			"another address":   withLinkQuery(t, link, func(q url.Values) { q.Set("email", "bob@example.com") }),
			"no address":        withLinkQuery(t, link, func(q url.Values) { q.Del("email") }),
			"malformed address": withLinkQuery(t, link, func(q url.Values) { q.Set("email", "alice@example.com,bob@example.com") }),
		} {
			t.Run(name, func(t *testing.T) { wantVerificationFailed(t, b.in(t), base, forged) })
		}
		// The real link still signs alice in, as the same user.
		r := b.navigate(link)
		wantLocation(t, r, base+"/again")
		if sub := wantStoredUserID(t, sessionClaims(t, r)); aliceSub != "" && sub != aliceSub {
			t.Errorf("second sign-in of alice: sub %s, want %s as at the first", sub, aliceSub)
		}
	})

	// The link's callbackUrl goes through the redirect check like any other.
	t.Run("link sending elsewhere", func(t *testing.T) {
		b := newBrowser(t)
		wantLinkSent(t, b, base, b.requestLink(base, "email", "alice@example.com", base+"/app"), "email")
		link := testmailpit.Link(t, mp.Latest(t, "alice@example.com").Text, callbackPrefix(base, "email"))
		r := b.navigate(withLinkQuery(t, link, func(q url.Values) { q.Set("callbackUrl", "https://evil.example/phish") }))
		if loc := r.Header.Get("Location"); r.StatusCode != http.StatusFound || (loc != base && loc != base+"/") {
			t.Errorf("a link with callbackUrl https://evil.example answered %d to %q, want 302 to %s/", r.StatusCode, loc, base)
		}
	})

	// Of concurrent requests with one link, exactly one signs in.
	t.Run("link followed concurrently", func(t *testing.T) {
		b := newBrowser(t)
		wantLinkSent(t, b, base, b.requestLink(base, "email", "alice@example.com", base+"/raced"), "email")
		link := testmailpit.Link(t, mp.Latest(t, "alice@example.com").Text, callbackPrefix(base, "email"))
		const n = 8
		locations := make(chan string, n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
				resp, err := c.Get(link)
				if err != nil {
					locations <- err.Error()
					return
				}
				resp.Body.Close()
				loc := resp.Header.Get("Location")
				for _, c := range resp.Cookies() {
					if c.Name == sessionCookie && c.MaxAge >= 0 {
						loc += " (session)"
					}
				}
				locations <- loc
			}()
		}
		wg.Wait()
		close(locations)
		counts := map[string]int{}
		for l := range locations {
			counts[l]++
		}
		if counts[base+"/raced (session)"] != 1 || counts["/.auth/error?error=Verification"] != n-1 {
			t.Errorf("%d concurrent requests with one link were answered %v, want one sign-in and %d Verification errors", n, counts, n-1)
		}
	})

	t.Run("no CSRF token", func(t *testing.T) {
		b := newBrowser(t)
		before := len(mp.Messages(t))
		f := b.signInForm(base, base+"/app", "/.auth/signin/email")
		f.Values.Set("email", "alice@example.com")
		tok := f.Values.Get("csrfToken")
		wrong := "0"
		if tok[0] == '0' {
			wrong = "1" // a different first character, whatever the token's was
		}
		f.Values.Set("csrfToken", wrong+tok[1:])
		r := b.post(base+f.Action, f.Values)
		wantStatus(t, r, http.StatusForbidden)
		if n := len(mp.Messages(t)); n != before {
			t.Errorf("mailpit received %d messages for a POST with a wrong CSRF token", n-before)
		}
	})

	t.Run("expired link", func(t *testing.T) {
		b := newBrowser(t)
		wantLinkSent(t, b, base, b.requestLink(base, "quick", "dave@example.com", base+"/app"), "quick")
		link := testmailpit.Link(t, mp.Latest(t, "dave@example.com").Text, callbackPrefix(base, "quick"))
		time.Sleep(1500 * time.Millisecond) // past the provider's max_age of 1s
		wantVerificationFailed(t, b, base, link)
	})

	t.Run("denied address", func(t *testing.T) {
		b := newBrowser(t)
		before := len(mp.Messages(t))
		r := b.requestLink(base, "email", "Eve@Blocked.test", base+"/app")
		page := wantErrorPage(t, b, base, r, "AccessDenied", http.StatusForbidden)
		wantNoLeak(t, page.Body)
		if n := len(mp.Messages(t)); n != before {
			t.Errorf("mailpit received %d messages for a denied address", n-before)
		}
		if n := len(hook.signInCalls("eve@blocked.test")); n != 0 {
			t.Errorf("the webhook after the deny rule was called %d times", n)
		}
	})

	for _, addr := range []string{"not-an-email", "a@b", "x@y.com,z@w.com", `"a"@b.com`, "a b@c.com", "", "a@b.com\r\nBcc: c@d.com"} {
		t.Run(fmt.Sprintf("malformed address %q", addr), func(t *testing.T) {
			b := newBrowser(t)
			before, calls := len(mp.Messages(t)), len(hook.calls)
			r := b.requestLink(base, "email", addr, base+"/app")
			wantStatus(t, r, http.StatusBadRequest)
			wantNoSetCookie(t, r, sessionCookie)
			if text := pageText(t, r.Body); !strings.Contains(text, "That does not look like an email address.") {
				t.Errorf("the 400 page does not say what is wrong: %s", text)
			}
			if n := len(mp.Messages(t)); n != before {
				t.Errorf("mailpit received %d messages for a malformed address", n-before)
			}
			hook.mu.Lock()
			if n := len(hook.calls); n != calls {
				t.Errorf("sign_in ran for a malformed address")
			}
			hook.mu.Unlock()
		})
	}

	t.Run("mail server down", func(t *testing.T) {
		b := newBrowser(t)
		before := caddy.LogCount(`"error_code":"EmailSignin"`)
		r := b.requestLink(base, "down", "erin@example.com", base+"/app")
		wantNoSetCookie(t, r, sessionCookie)
		page := wantErrorPage(t, b, base, r, "EmailSignin", http.StatusBadGateway)
		wantNoLeak(t, page.Body, fmt.Sprint(deadPort), "mail-password-e2e", "smtp")
		if !strings.Contains(pageText(t, page.Body), "The sign-in email could not be sent.") {
			t.Errorf("the EmailSignin page does not explain it: %s", pageText(t, page.Body))
		}
		if caddy.LogCount(`"error_code":"EmailSignin"`, fmt.Sprint(deadPort)) <= before {
			t.Error("no EmailSignin log line names the mail server")
		}
		if strings.Contains(caddy.Logs(), "mail-password-e2e") {
			t.Error("the log shows the SMTP password")
		}
	})

	// The server takes the message and then answers with an error: the link
	// may have gone out anyway, but authgate reported a failure, so the link
	// must not work.
	t.Run("mail server refuses the message", func(t *testing.T) {
		b := newBrowser(t)
		r := b.requestLink(base, "flaky", "frank@example.com", base+"/app")
		page := wantErrorPage(t, b, base, r, "EmailSignin", http.StatusBadGateway)
		wantNoLeak(t, page.Body, "554")
		text := flaky.lastText(t)
		link := testmailpit.Link(t, text, callbackPrefix(base, "flaky"))
		wantVerificationFailed(t, b, base, link)
	})

	t.Run("rate limit", func(t *testing.T) {
		b := newBrowser(t)
		for i := 1; i <= 5; i++ {
			wantLinkSent(t, b, base, b.requestLink(base, "email", "rate@example.com", base+"/app"), "email")
		}
		r := b.requestLink(base, "email", "Rate@example.com", base+"/app")
		wantStatus(t, r, http.StatusTooManyRequests)
		if !strings.Contains(pageText(t, r.Body), "Too many sign-in links were requested.") {
			t.Errorf("the 429 page does not explain it: %s", pageText(t, r.Body))
		}
		if n := len(mp.MessagesTo(t, "rate@example.com")); n != 5 {
			t.Errorf("mailpit received %d messages for rate@example.com, want 5", n)
		}
		// Other addresses are not limited by it.
		wantLinkSent(t, b, base, b.requestLink(base, "email", "grace@example.com", base+"/app"), "email")
	})
}

// flakySMTP is an SMTP server that takes a whole message and then refuses
// it, keeping what it was sent.
type flakySMTP struct {
	addr string
	mu   sync.Mutex
	msgs []string
}

func startFlakySMTP(t *testing.T) *flakySMTP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &flakySMTP{addr: l.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.serve(c)
			}()
		}
	}()
	return s
}

func (s *flakySMTP) serve(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	reply := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	reply("220 flaky.test ESMTP")
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		cmd := strings.ToUpper(strings.TrimSpace(line))
		switch {
		case strings.HasPrefix(cmd, "EHLO"), strings.HasPrefix(cmd, "HELO"):
			reply("250 flaky.test")
		case cmd == "DATA":
			reply("354 go ahead")
			var msg strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				msg.WriteString(strings.TrimPrefix(l, "."))
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, msg.String())
			s.mu.Unlock()
			reply("554 5.7.1 message refused")
		case cmd == "QUIT":
			reply("221 bye")
			return
		default:
			reply("250 ok")
		}
	}
}

// lastText returns the text/plain body of the last message the server took.
func (s *flakySMTP) lastText(t *testing.T) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.msgs) == 0 {
		t.Fatal("the flaky SMTP server received no message")
	}
	m, err := mail.ReadMessage(strings.NewReader(s.msgs[len(s.msgs)-1]))
	if err != nil {
		t.Fatalf("parsing the message: %v", err)
	}
	text, err := plainText(m.Header.Get("Content-Type"), m.Header.Get("Content-Transfer-Encoding"), m.Body)
	if err != nil {
		t.Fatalf("reading the message's text: %v", err)
	}
	return text
}

// plainText finds the text/plain part of a MIME entity and decodes it.
func plainText(contentType, encoding string, body io.Reader) (string, error) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return "", err
	}
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(body, params["boundary"]) // decodes quoted-printable parts
		for {
			p, err := mr.NextPart()
			if err != nil {
				return "", fmt.Errorf("no text/plain part: %v", err)
			}
			if text, err := plainText(p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"), p); err == nil {
				return text, nil
			}
		}
	}
	if mt != "text/plain" {
		return "", fmt.Errorf("%s is not text/plain", mt)
	}
	if strings.EqualFold(encoding, "base64") {
		body = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(body)
	return string(b), err
}

// logLinks returns the sign-in links `mailer log` wrote to Caddy's log for
// the address, oldest first.
func logLinks(t *testing.T, c *testcaddy.Server, to, prefix string) []string {
	t.Helper()
	var links []string
	for _, line := range strings.Split(c.Logs(), "\n") {
		if !strings.Contains(line, "email sign-in link") {
			continue
		}
		var entry struct {
			To      string `json:"to"`
			Message string `json:"message"`
		}
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry.To == to {
			links = append(links, testmailpit.Link(t, entry.Message, prefix))
		}
	}
	return links
}

// latestLogLink returns the newest link `mailer log` wrote for the address.
func latestLogLink(t *testing.T, c *testcaddy.Server, to, prefix string) string {
	t.Helper()
	links := logLinks(t, c, to, prefix)
	if len(links) == 0 {
		t.Fatalf("no sign-in link for %s in Caddy's log", to)
	}
	return links[len(links)-1]
}
