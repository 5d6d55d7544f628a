package e2e

import (
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/authgate/caddy-authgate/internal/testcaddy"
	"github.com/authgate/caddy-authgate/internal/testsite"
)

// TestCredentialsProvidersSubs signs alice in through two credentials
// providers whose files both list her: the default provider's alice is
// sub=alice, the other's partners:alice, so a rule about one is not about the
// other.
func TestCredentialsProvidersSubs(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	partner := aliceUser
	partner.Password = "partner-password-e2e"
	testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(testsite.UsersFile(t, aliceUser))+
		"\t\tprovider credentials partners {\n\t\t\tusers_file "+testsite.UsersFile(t, partner)+"\n\t\t}\n")+
		siteBlock(port, "authgate {\n\t\trequire "+bt+`token.sub == "alice"`+bt+"\n\t}", up.URL))

	main, other := newBrowser(t), newBrowser(t)
	r := main.signInWith(base, "credentials", "alice", aliceUser.Password)
	wantSignedIn(t, r)
	if sub := sessionClaims(t, r)["sub"]; sub != "alice" {
		t.Errorf("the default provider's alice has sub %v, want alice", sub)
	}
	r = other.signInWith(base, "partners", "alice", partner.Password)
	wantSignedIn(t, r)
	if sub := sessionClaims(t, r)["sub"]; sub != "partners:alice" {
		t.Errorf("partners' alice has sub %v, want partners:alice", sub)
	}

	wantStatus(t, main.navigate(base+"/admin"), http.StatusOK)
	if got := up.Last(t).Header.Get("X-Auth-Request-User"); got != "alice" {
		t.Errorf("the default provider's alice reached the upstream as %q, want alice", got)
	}
	wantStatus(t, other.navigate(base+"/admin"), http.StatusForbidden)
}

// TestCredentialsUsersFileReload changes the users file under a running
// Caddy: a new password, a new user and a removed one take effect without a
// restart.
func TestCredentialsUsersFileReload(t *testing.T) {
	port := testcaddy.FreePort(t)
	base := origin(port)
	up := testsite.NewUpstream(t, testsite.OK)
	path := testsite.UsersFile(t, aliceUser, bobUser)
	caddy := testcaddy.Start(t, globalBlock(testsite.CredentialsProvider(path))+siteBlock(port, "authgate", up.URL))

	wantSignedIn(t, newBrowser(t).signInWith(base, "credentials", "alice", aliceUser.Password))
	wantSignedIn(t, newBrowser(t).signInWith(base, "credentials", "bob", bobUser.Password))

	newAlice := aliceUser
	newAlice.Password = "alice-new-password-e2e"
	carol := testsite.User{Login: "carol", Password: "carol-password-e2e", Name: "Carol Example", Email: "carol@example.com"}
	content, err := os.ReadFile(testsite.UsersFile(t, newAlice, carol))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // the file is looked at once a second at most

	wantSignedIn(t, newBrowser(t).signInWith(base, "credentials", "alice", newAlice.Password))
	wantSignedIn(t, newBrowser(t).signInWith(base, "credentials", "carol", carol.Password))
	wantRefused(t, newBrowser(t).signInWith(base, "credentials", "alice", aliceUser.Password))
	wantRefused(t, newBrowser(t).signInWith(base, "credentials", "bob", bobUser.Password))
	if !caddy.LogContains(`"msg":"users_file reloaded"`, `"users":2`) {
		t.Error("the reload is not logged")
	}
}
