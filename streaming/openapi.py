def openapi_document():
    return {}
