package providers

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/authgate/caddy-authgate/internal/httpjson"
)

// authorizeEndpoint checks credentials with an HTTP service of the operator's.
type authorizeEndpoint struct {
	url     string
	timeout time.Duration
	client  *http.Client
}

func newAuthorizeEndpoint(cfg Config, client *http.Client) (*authorizeEndpoint, error) {
	if err := checkHTTPURL(fmt.Sprintf("provider %q: authorize_url", cfg.ID), cfg.AuthorizeURL); err != nil {
		return nil, err
	}
	ep := &authorizeEndpoint{url: cfg.AuthorizeURL, timeout: time.Duration(cfg.Timeout), client: noRedirects(client)}
	if ep.timeout <= 0 {
		ep.timeout = 5 * time.Second
	}
	return ep, nil
}

// noRedirects is client without following redirects: an answer is what the
// configured endpoint says, never another host's.
func noRedirects(client *http.Client) *http.Client {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &c
}

// authorize POSTs the fields as JSON. 2xx with a user object signs in; 401 and
// 403 are ErrCredentials; anything else (timeout, other status, an answer that is
// not a user) is an error, so the sign-in fails closed.
func (ep *authorizeEndpoint) authorize(ctx context.Context, fields map[string]string) (map[string]any, error) {
	body, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, ep.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "authgate")
	var u map[string]any
	status, err := httpjson.Do(ep.client, req, maxResponse, &u)
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return nil, ErrCredentials
	case errors.Is(err, httpjson.ErrDecode) || err == nil && u == nil:
		return nil, errors.New("authorize endpoint: the answer is not a JSON user object")
	case err != nil:
		return nil, fmt.Errorf("authorize endpoint: %w", err)
	}
	id := idString(u["id"])
	if id == "" {
		return nil, errors.New("authorize endpoint: the user has no id (a string or an integer)")
	}
	// Extra fields (a role, say) stay, for the sign_in and jwt rules to read as user.*.
	u["id"], u["name"], u["email"], u["image"] = id, str(u, "name"), str(u, "email"), str(u, "image")
	return u, nil
}
