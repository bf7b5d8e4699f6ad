"""The HTTP surface; the app only calls the library."""
