package v1alpha1

import (
	"net/url"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/runtime"
)

// The attach query decodes as kube-apiserver decodes a pod's attach query
// (a boolean is true unless absent, "false" or "0"), and a malformed
// number names its parameter.
func TestAttachOptionsFromQuery(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	codec := runtime.NewParameterCodec(scheme)
	for _, tc := range []struct {
		query string
		want  TerminalSessionAttachOptions
		err   string
	}{
		{query: "stdin=true&stdout=1&tty=yes&since=42&uid=u-1",
			want: TerminalSessionAttachOptions{Stdin: true, Stdout: true, TTY: true, Since: 42, UID: "u-1"}},
		{query: "stdout=true&stderr=0&stdin=false", want: TerminalSessionAttachOptions{Stdout: true}},
		{query: "stdout=true&since=", want: TerminalSessionAttachOptions{Stdout: true}},
		{query: "stdout=true&since=abc", err: `since: "abc" is not a byte count`},
		{query: "stdout=true&since=1e3", err: `since: "1e3" is not a byte count`},
	} {
		q, err := url.ParseQuery(tc.query)
		if err != nil {
			t.Fatal(err)
		}
		var got TerminalSessionAttachOptions
		err = codec.DecodeParameters(q, SchemeGroupVersion, &got)
		got.TypeMeta = tc.want.TypeMeta // set by decoding; not what is tested
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.query, err, tc.err)
			}
		case err != nil:
			t.Errorf("%s: %v", tc.query, err)
		case got != tc.want:
			t.Errorf("%s: %+v, want %+v", tc.query, got, tc.want)
		}
	}
}
