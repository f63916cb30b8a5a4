"""The result cache: answers repeated prompts without generating."""
