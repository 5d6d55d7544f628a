package e2e

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testmailpit"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// These tests are about guessing: passwords tried against the credentials
// provider, and sign-in links asked for an address that is not the asker's.
// Distinct clients are distinct loopback addresses (127.0.0.2, …): Caddy sees
// each as its own client IP, with no proxy header to trust.

// newBrowserFrom is a browser whose connections come from ip, a loopback
// address other than 127.0.0.1: another client, as Caddy sees it.
func newBrowserFrom(t *testing.T, ip string) *browser {
	t.Helper()
	b := newBrowser(t)
	tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}).DialContext}
	t.Cleanup(tr.CloseIdleConnections)
	b.c.Transport = tr
	return b
}

// signInWith posts the credentials form of provider and returns authgate's answer.
func (b *browser) signInWith(base, provider, username, password string) response {
	b.t.Helper()
	f := b.signInForm(base, base+"/", "/.auth/callback/"+provider)
	f.Values.Set("username", username)
	f.Values.Set("password", password)
	return b.post(base+f.Action, f.Values)
}

// wantRefused checks that r is the credentials form's CredentialsSignin redirect.
func wantRefused(t *testing.T, r response) {
	t.Helper()
	if r.StatusCode != http.StatusFound || !strings.Contains(r.Header.Get("Location"), "error=CredentialsSignin") {
		t.Fatalf("answered %d to %q, want 302 to the form with CredentialsSignin", r.StatusCode, r.Header.Get("Location"))
	}
}

// wantTooMany checks that r is a 429 page with a Retry-After of at most most
// seconds, and returns the Retry-After.
func wantTooMany(t *testing.T, r response, most int) int {
	t.Helper()
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("answered %d (Location %q), want 429", r.StatusCode, r.Header.Get("Location"))
	}
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || ra < 1 || ra > most {
		t.Fatalf("Retry-After %q, want 1 to %d seconds", r.Header.Get("Retry-After"), most)
	}
	if text := pageText(t, r.Body); !strings.Contains(text, "Try again in") {
		t.Errorf("the 429 page does not say when to try again: %s", text)
	}
	return ra
}

// wantSignedIn checks that r signed in and sent the browser on.
func wantSignedIn(t *testing.T, r response) {
	t.Helper()
	if r.StatusCode != http.StatusFound || setCookie(r, sessionCookie) == nil {
		t.Fatalf("answered %d to %q with no session cookie, want a sign-in", r.StatusCode, r.Header.Get("Location"))
	}
}

// TestCredentialsBruteForce guesses passwords: after 5 failures for a username
// from one client, that client waits (429 with Retry-After), the right password
// included, and waits longer after every further failure; after 20 failures for
// a username, or 20 from a client, every try waits. Other clients keep their
// own allowance, a success resets nothing, and the refusals are logged for
// fail2ban without the passwords.
func TestCredentialsBruteForce(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	users := testsite.UsersFile(t, aliceUser, bobUser)
	caddy := testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(users)+
		"\t\tprovider credentials quick {\n\t\t\tusers_file "+users+"\n\t\t\tfailure_window 20s\n\t\t}\n")+
		siteBlock(port, "authgate", up.URL))

	t.Run("one client, one username", func(t *testing.T) {
		b := newBrowser(t)
		for i := 1; i <= 30; i++ {
			r := b.signInWith(base, "credentials", "alice", fmt.Sprintf("guess-%d-e2e", i))
			if i <= failuresPerUserClient {
				wantRefused(t, r)
				continue
			}
			// 15m / 30: the first wait is 30s.
			wantTooMany(t, r, 30)
		}
		wantTooMany(t, b.signInWith(base, "credentials", "alice", aliceUser.Password), 30)
		// Control: the right password from another client signs in.
		wantSignedIn(t, newBrowserFrom(t, "127.0.0.2").signInWith(base, "credentials", "alice", aliceUser.Password))
	})

	t.Run("the wait grows and ends", func(t *testing.T) {
		// failure_window 20s: the first wait is 1s (20s/30 is less), then 2s, 4s.
		b := newBrowserFrom(t, "127.0.0.3")
		for range failuresPerUserClient {
			wantRefused(t, b.signInWith(base, "quick", "alice", "wrong-e2e"))
		}
		var waits []int
		for i := range 3 {
			ra := wantTooMany(t, b.signInWith(base, "quick", "alice", aliceUser.Password), 20)
			waits = append(waits, ra)
			time.Sleep(time.Duration(ra)*time.Second + 100*time.Millisecond) // the wait, then
			if i < 2 {
				wantRefused(t, b.signInWith(base, "quick", "alice", "wrong-e2e")) // one more failure
			}
		}
		if waits[0] != 1 || waits[1] != 2 || waits[2] != 4 {
			t.Errorf("Retry-After after 5, 6 and 7 failures: %v, want [1 2 4]", waits)
		}
		wantSignedIn(t, b.signInWith(base, "quick", "alice", aliceUser.Password))
	})

	t.Run("one client, many usernames", func(t *testing.T) {
		b := newBrowserFrom(t, "127.0.0.4")
		for i := range failuresPerClient - 1 {
			// Under the per-username limit each: only the client's counts up.
			wantRefused(t, b.signInWith(base, "credentials", fmt.Sprintf("user%d", i%5), "wrong-e2e"))
		}
		// The attacker's own account signs in, and clears nothing.
		wantSignedIn(t, newBrowserFrom(t, "127.0.0.4").signInWith(base, "credentials", "bob", bobUser.Password))
		wantRefused(t, b.signInWith(base, "credentials", "user9", "wrong-e2e"))
		wantTooMany(t, b.signInWith(base, "credentials", "bob", bobUser.Password), 30)
		// Control: bob from elsewhere.
		wantSignedIn(t, newBrowserFrom(t, "127.0.0.5").signInWith(base, "credentials", "bob", bobUser.Password))
	})

	t.Run("many clients, one username", func(t *testing.T) {
		// alice has 5 failures from 127.0.0.1; 4 each from 4 more clients
		// make 21: past the per-username limit, every client waits.
		for i := range 4 {
			b := newBrowserFrom(t, fmt.Sprintf("127.0.0.%d", 10+i))
			for range failuresPerUserClient - 1 {
				r := b.signInWith(base, "credentials", "alice", "wrong-e2e")
				if r.StatusCode == http.StatusTooManyRequests {
					break // the 20th failure came
				}
				wantRefused(t, r)
			}
		}
		wantTooMany(t, newBrowserFrom(t, "127.0.0.20").signInWith(base, "credentials", "alice", aliceUser.Password), 30)
		// Control: another username from that client.
		wantSignedIn(t, newBrowserFrom(t, "127.0.0.20").signInWith(base, "credentials", "bob", bobUser.Password))
	})

	logs := caddy.Logs()
	for _, p := range []string{"wrong-e2e", "guess-1-e2e", aliceUser.Password, bobUser.Password} {
		if strings.Contains(logs, p) {
			t.Errorf("the log contains the password %q", p)
		}
	}
	for _, tc := range []struct{ what, reason, ip string }{
		{"a wrong password", `"reason":"wrong username or password"`, `"client_ip":"127.0.0.1"`},
		{"a rate limit", `"reason":"too many failed sign-ins"`, `"client_ip":"127.0.0.1"`},
	} {
		if caddy.LogCount(`"msg":"sign-in refused"`, tc.reason, `"provider":"credentials"`, `"username":"alice"`, tc.ip, `"error_code":"CredentialsSignin"`) == 0 {
			t.Errorf("no info line for %s with the provider, username, client IP and error code", tc.what)
		}
	}
}

// The limits TestCredentialsBruteForce expects (handlers' own are unexported).
const (
	failuresPerUserClient = 5
	failuresPerClient     = 20
)

// TestCredentialsOverload posts unknown usernames from many clients at once
// with a costly hash in the users file: as many checks run as there are CPUs,
// and the excess is answered 503 with Retry-After after a short wait instead of
// queueing; nothing else fails.
func TestCredentialsOverload(t *testing.T) {
	const cost = 11
	hash, err := bcrypt.GenerateFromPassword([]byte("slow-password-e2e"), cost)
	if err != nil {
		t.Fatal(err)
	}
	users := testsite.UsersFile(t, aliceUser)
	if err := os.WriteFile(users, []byte("slow:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Enough clients that the checks cannot all be done within the 1s a
	// request waits for one (a measure to size the test, not an assertion).
	start := time.Now()
	_ = bcrypt.CompareHashAndPassword(hash, []byte("x"))
	one := time.Since(start)
	clients := min(runtime.GOMAXPROCS(0)*(int(time.Second/max(one, time.Millisecond))+3), 500)
	port := testcaddy.FreePort(t)
	base := origin(port)
	caddy := testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(users))+siteBlock(port, "authgate", testsite.NewUpstream(t, testsite.OK).URL))

	forms := make([]*browser, clients)
	vals := make([]url.Values, clients)
	for i := range clients {
		forms[i] = newBrowserFrom(t, fmt.Sprintf("127.0.%d.%d", 1+i/250, 2+i%250))
		f := forms[i].signInForm(base, base+"/", "/.auth/callback/credentials")
		f.Values.Set("username", fmt.Sprintf("nobody-%d", i))
		f.Values.Set("password", "guess-e2e")
		vals[i] = f.Values
	}
	var wg sync.WaitGroup
	answers := make([]response, clients)
	for i := range clients {
		wg.Go(func() { answers[i] = forms[i].post(base+"/.auth/callback/credentials", vals[i]) })
	}
	wg.Wait()
	busy := 0
	for i, r := range answers {
		switch {
		case r.StatusCode == http.StatusServiceUnavailable:
			busy++
			if r.Header.Get("Retry-After") != "1" {
				t.Errorf("a 503 has Retry-After %q, want 1", r.Header.Get("Retry-After"))
			}
		case r.StatusCode == http.StatusFound && strings.Contains(r.Header.Get("Location"), "error=CredentialsSignin"):
		default:
			t.Errorf("client %d: answered %d to %q, want 503 or the CredentialsSignin redirect", i, r.StatusCode, r.Header.Get("Location"))
		}
	}
	t.Logf("%d clients at once, %d CPUs, one check %v: %d answered 503", clients, runtime.GOMAXPROCS(0), one, busy)
	if busy == 0 {
		t.Errorf("none of %d concurrent checks was answered 503: checks queue without bound", clients)
	}
	if caddy.LogCount(`"reason":"too many password checks at once"`, `"username":"nobody-`, `"error_code":"CredentialsSignin"`) != busy {
		t.Errorf("the 503s are not each logged with the username and error code")
	}
}

// TestEmailLimitsPerClient asks for sign-in links for one address from
// several clients through a real SMTP server (mailpit): a client gets 5 an
// hour for an address, so one who is not its owner cannot use up the
// owner's allowance; the address gets 20 from all clients together, and a
// client 20 for all addresses.
func TestEmailLimitsPerClient(t *testing.T) {
	mp := testmailpit.Start(t)
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	caddy := testcaddy.Start(t, globalBlock("\t\turl "+base+"\n"+
		emailProvider("", mp.MailerURL("authgate", "mail-password-e2e"))+
		"\t\tcallbacks {\n\t\t\tsign_in {\n\t\t\t\tdefault allow\n\t\t\t}\n\t\t}\n")+siteBlock(port, "authgate", up.URL))
	const victim = "victim@example.com"
	sent := func() int { return len(mp.MessagesTo(t, victim)) }

	attacker := newBrowserFrom(t, "127.0.0.2")
	for range 5 {
		wantLinkSent(t, attacker, base, attacker.requestLink(base, "email", victim, base+"/"), "email")
	}
	r := attacker.requestLink(base, "email", victim, base+"/")
	if ra := wantTooMany(t, r, 3600); ra < 3500 {
		t.Errorf("Retry-After %d after 5 links in a row, want about an hour", ra)
	}
	if !strings.Contains(pageText(t, r.Body), "Too many sign-in links were requested.") {
		t.Errorf("the 429 page does not explain it: %s", pageText(t, r.Body))
	}
	if n := sent(); n != 5 {
		t.Fatalf("mailpit received %d links for %s, want 5", n, victim)
	}

	// The owner, from their own client, still gets a link and signs in with it.
	owner := newBrowser(t)
	wantLinkSent(t, owner, base, owner.requestLink(base, "email", victim, base+"/app"), "email")
	link := testmailpit.Link(t, mp.Latest(t, victim).Text, callbackPrefix(base, "email"))
	wantLocation(t, owner.navigate(link), base+"/app")

	// 20 links from all clients together: then nobody gets one.
	for i := 0; sent() < 20; i++ {
		b := newBrowserFrom(t, fmt.Sprintf("127.0.0.%d", 3+i/5))
		wantLinkSent(t, b, base, b.requestLink(base, "email", victim, base+"/"), "email")
	}
	wantTooMany(t, owner.requestLink(base, "email", victim, base+"/"), 3600)
	wantTooMany(t, newBrowserFrom(t, "127.0.0.30").requestLink(base, "email", victim, base+"/"), 3600)
	if n := sent(); n != 20 {
		t.Errorf("mailpit received %d links for %s, want 20", n, victim)
	}

	// One client, many addresses: 20.
	spammer := newBrowserFrom(t, "127.0.0.40")
	for i := range 20 {
		wantLinkSent(t, spammer, base, spammer.requestLink(base, "email", fmt.Sprintf("user%d@example.com", i), base+"/"), "email")
	}
	wantTooMany(t, spammer.requestLink(base, "email", "user99@example.com", base+"/"), 3600)
	// Control: that address from another client.
	wantLinkSent(t, owner, base, owner.requestLink(base, "email", "user99@example.com", base+"/"), "email")

	if caddy.LogCount(`"msg":"sign-in refused"`, `"provider":"email"`, `"email":"victim@example.com"`, `"client_ip":"127.0.0.2"`, `"error_code":"EmailSignin"`) == 0 {
		t.Error("no info line for the refused link with the provider, address, client IP and error code")
	}
}
