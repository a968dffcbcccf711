"""CleverTap "Generic (Others)" SMS provider: the saveSingleSms endpoint and delivery reports back."""
