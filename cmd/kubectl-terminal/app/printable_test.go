package app

import (
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{
		"alice":                "alice",
		"émile 日本":             "émile 日本",
		"evil\x1b]0;pwned\x07": `evil\u001b]0;pwned\u0007`,
		"a\x1b[2J\x1b[Hb":      `a\u001b[2J\u001b[Hb`,
		"tab\there\nline":      `tab\u0009here\u000aline`,
		"c1\u009b31m":          `c1\u009b31m`,
		"bidi \u202etxt.exe":   `bidi \u202etxt.exe`,
		"del\x7f":              `del\u007f`,
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestPrintableError(t *testing.T) {
	err := printableError(apierrors.NewForbidden(schema.GroupResource{Resource: "x"}, "n", errors.New("user \x1b[31mroot")))
	if !apierrors.IsForbidden(err) || strings.ContainsRune(err.Error(), '\x1b') {
		t.Errorf("%v: want a 403 without the escape", err)
	}
	if err := printableError(errors.New("plain")); err.Error() != "plain" {
		t.Errorf("%v", err)
	}
}
