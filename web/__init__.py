"""voxroom.web"""
