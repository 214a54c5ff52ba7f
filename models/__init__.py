"""Promise's pure core: features, regressor, buffer policies, calendar and quoting."""
