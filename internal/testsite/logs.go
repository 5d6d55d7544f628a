package testsite

import "strings"

// LogCount is the number of lines of logs that contain every one of parts.
func LogCount(logs string, parts ...string) int {
	n := 0
	for _, line := range strings.Split(logs, "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			n++
		}
	}
	return n
}

// Excerpt is the start of a response body, short enough for a test's message.
func Excerpt(s string) string {
	if len(s) > 1500 {
		return s[:1500] + "…"
	}
	return s
}
