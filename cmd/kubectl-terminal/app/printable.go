package app

import (
	"errors"
	"fmt"
	"strings"
	"unicode"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// printable makes text from the server safe to print on a terminal: control
// characters (C0, DEL, C1: escape sequences start with them) and
// bidirectional overrides become visible escapes. Names, owners, reasons and
// messages come from the server, and parts of them from other users (an
// owner's name, a pod's status message): printed as they are, they could
// move the cursor, rewrite the screen, retitle the window or hide text.
func printable(s string) string {
	if strings.IndexFunc(s, unsafeRune) < 0 {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if unsafeRune(r) {
			fmt.Fprintf(&b, "\\u%04x", r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func unsafeRune(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Bidi_Control, r) || r == unicode.ReplacementChar
}

// printableError is err with the server's words made printable, keeping
// an API status (kubectl prints its reason: "Error from server (Forbidden)").
func printableError(err error) error {
	var st *apierrors.StatusError
	if errors.As(err, &st) {
		cp := *st
		cp.ErrStatus.Message = printable(st.ErrStatus.Message)
		return &cp
	}
	if msg := printable(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}
