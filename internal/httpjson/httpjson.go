// Package httpjson makes HTTP calls whose answer is a JSON document of bounded size.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// ErrDecode marks an answer whose body is not the JSON the caller decodes into.
var ErrDecode = errors.New("decoding the answer")

// Do sends req with client and, when the answer's status is 2xx, decodes its
// body into v. At most limit bytes of the body are read: a longer answer is an
// error, so a broken or hostile server cannot make authgate buffer without end.
// The body must be exactly one JSON value.
//
// status is the answer's status code, 0 when no answer came. Any other status
// than 2xx is an error ("status 500") and the body is not decoded, so callers
// can give a particular status (401, say) its meaning by status alone.
//
// The errors do not name the URL, so that each caller says in its own words
// which call failed: the transport's error (a timeout, a refused connection),
// "reading the answer: …", "status N", "answer larger than N bytes", or one
// that wraps ErrDecode. Do asks for JSON (Accept) unless req already says what
// it accepts.
func Do(client *http.Client, req *http.Request, limit int64, v any) (status int, err error) {
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		// url.Error repeats the method and URL, which the caller names already.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// Drained (bounded) so that the connection can be reused.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, limit))
		return resp.StatusCode, fmt.Errorf("status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(body)) > limit {
		return resp.StatusCode, fmt.Errorf("answer larger than %d bytes", limit)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("%w: %v", ErrDecode, err)
	}
	return resp.StatusCode, nil
}
