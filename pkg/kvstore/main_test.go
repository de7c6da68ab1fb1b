package kvstore

import "os"

func tempDir() (string, error) { return os.MkdirTemp("", "kvstore-test-") }
func removeAll(dir string)     { _ = os.RemoveAll(dir) }
func exit(code int)            { os.Exit(code) }
