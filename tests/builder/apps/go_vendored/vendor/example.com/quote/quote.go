// Package quote is vendored: it exists nowhere else, so only -mod=vendor can build the app.
package quote

// Hello returns a greeting.
func Hello() string {
	return "Hello from a vendored module"
}
