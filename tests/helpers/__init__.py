"""Test helpers shared by the test suites: seed payloads and provider-side signing."""
