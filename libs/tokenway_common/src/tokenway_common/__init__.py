"""Bootstrap written once for every tokenway service."""
