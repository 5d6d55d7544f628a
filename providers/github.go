package providers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/github"
)

const githubAPI = "https://api.github.com"

// newGitHub presets GitHub: the profile is the /user object, and its email is the
// primary verified address from /user/emails (the public one may be empty or stale).
func newGitHub(cfg Config, client *http.Client) (*plainOAuth, error) {
	if err := requireClient(cfg); err != nil {
		return nil, err
	}
	endpoint := github.Endpoint
	if cfg.AuthURL != "" {
		endpoint.AuthURL = cfg.AuthURL
	}
	if cfg.TokenURL != "" {
		endpoint.TokenURL = cfg.TokenURL
	}
	api := strings.TrimSuffix(firstNonEmpty(cfg.APIURL, githubAPI), "/")
	for what, u := range map[string]string{"auth_url": endpoint.AuthURL, "token_url": endpoint.TokenURL, "api_url": api} {
		if err := checkHTTPURL(fmt.Sprintf("provider %q: %s", cfg.ID, what), u); err != nil {
			return nil, err
		}
	}
	p := &plainOAuth{
		oauthBase: oauthBase{id: cfg.ID, name: displayName(cfg, "GitHub"), typ: TypeOAuth, client: client, emailLinking: cfg.AllowEmailLinking},
		conf: oauth2.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			Endpoint:     endpoint,
			Scopes:       scopesOr(cfg, "read:user", "user:email"),
		},
	}
	p.profile = func(ctx context.Context, tok *oauth2.Token) (map[string]any, error) {
		var prof map[string]any
		if err := getJSON(ctx, client, api+"/user", tok.AccessToken, &prof); err != nil {
			return nil, fmt.Errorf("fetching the GitHub user: %w", err)
		}
		if prof == nil { // the body was `null`
			return nil, errors.New("fetching the GitHub user: no user object")
		}
		var emails []struct {
			Email    string `json:"email"`
			Primary  bool   `json:"primary"`
			Verified bool   `json:"verified"`
		}
		if err := getJSON(ctx, client, api+"/user/emails", tok.AccessToken, &emails); err != nil {
			return nil, fmt.Errorf("fetching GitHub emails: %w", err)
		}
		prof["email"] = nil
		for _, e := range emails {
			if e.Primary && e.Verified {
				prof["email"] = e.Email
			}
		}
		if slices.Contains(p.conf.Scopes, "read:org") {
			// With read:org, rules can test membership: "acme" in profile.orgs.
			var orgs []struct {
				Login string `json:"login"`
			}
			if err := getJSON(ctx, client, api+"/user/orgs?per_page=100", tok.AccessToken, &orgs); err != nil {
				return nil, fmt.Errorf("fetching GitHub organizations: %w", err)
			}
			logins := make([]any, len(orgs))
			for i, o := range orgs {
				logins[i] = o.Login
			}
			prof["orgs"] = logins
		}
		return prof, nil
	}
	p.user = func(prof map[string]any) map[string]any {
		return map[string]any{
			"id":    idString(prof["id"]),
			"name":  firstNonEmpty(str(prof, "name"), str(prof, "login")),
			"email": str(prof, "email"),
			"image": str(prof, "avatar_url"),
		}
	}
	return p, nil
}
