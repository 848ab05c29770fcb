// Package greeting says hello.
package greeting

// For greets a language.
func For(language string) string {
	return "Hello from " + language
}
