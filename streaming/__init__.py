"""voxroom.streaming"""
